"""mrvl.dialects"""
