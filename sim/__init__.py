"""mrvl.sim"""
