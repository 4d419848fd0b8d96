"""spaseg.pp"""
