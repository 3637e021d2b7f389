"""Program families: each draws one random program (IR), its statement and its input domains."""
