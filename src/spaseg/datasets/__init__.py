"""spaseg.datasets"""
