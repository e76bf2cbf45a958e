"""The operators' audit of served cutouts: who cut what, when, kept for a while."""
