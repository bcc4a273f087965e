"""Memory: short-term window, long-term facts and recall of past exchanges, in Chroma."""
