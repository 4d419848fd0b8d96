"""spaseg.tl"""
