"""core/inbound"""
