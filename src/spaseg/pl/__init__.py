"""spaseg.pl"""
