"""pplcorr"""
