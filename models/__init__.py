"""mrvl.models"""
