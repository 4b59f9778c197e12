"""mrvl.frontend"""
