"""The vocabulary every bot package shares: chat messages, roles, text cleaning, names.

Imports nothing else of the bot.
"""
