"""Membership-inference attacks; one registered class per file, higher score = member."""
