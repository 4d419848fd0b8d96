"""spaseg.io"""
