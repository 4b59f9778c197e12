"""mrvl.lowering"""
