"""targeted"""
