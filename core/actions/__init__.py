"""The one door for every change: named actions, one module per noun.

Each action takes the acting user as the keyword `actor`, checks that the role may do it,
validates, writes and records its audit event in one transaction. The dashboard, the CLI,
the serving API and the controller all call these; none of them writes through `db.repo`.
"""
