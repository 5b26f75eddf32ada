"""Repository functions per aggregate: take `*, session`, never commit, return dataclasses."""
