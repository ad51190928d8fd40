"""The office's books and letters: the registers (register), cases and their calendar,
receipts, letters, reminders, signed results, the digest and the printable exports.
"""
