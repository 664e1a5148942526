"""A faithful, fast simulator of Nivoda's GraphQL diamond feed (`opus feed-sim`, `python -m feedsim`).

It serves Nivoda's contract at `POST /api/diamonds` (authenticate, `as(token)`,
`diamonds_by_query`, `diamonds_by_query_count`), validates requests against `schema.graphql`, and
reproduces the quirks a client must survive: prices in cents, `total_count` = the page window,
availability spelled "AVAILABLE"/"On Hold"/"Sold"/"MEMO"/"NOT AVAILABLE", an unreliable
`certificate.labgrown`, stones without certificate/image/video, fancy and compound colours, several
spellings per grade. Faults (rate limit with 429 + Retry-After, 5xx, CDN 403, hangs, GraphQL errors
in a 200, token expiry) and churn are knobs; `/_sim/*` exposes ground truth and counters.

Modules: `inventory` (numpy columns from a seed), `payload` (items built lazily per request),
`filters` (DiamondQuery semantics), `matching` (cached, churn-maintained match lists), `churn`,
`gql` (parse/validate/project), `simulator` (faults and resolution), `app` (ASGI), `embed` (thread
or child process), `cli`.

Ordering and ids: `createdAt ASC` is stable, ties broken by id; ids sort in creation order, so
paging by offset in that order never reorders stones already passed.

Time and churn: every change (reprice, hold, sale) sets updatedAt to the current time, additions
get createdAt = updatedAt = now, and removals delete the stone. Hence the set of stones matching a
query whose `updated.to` lies in the past never grows, it can only shrink (stones leave when they
change or disappear; nothing new can enter a closed window). Real feeds behave this way and the
ingestion design relies on it: a run that fixes its `updatedTo` when it is planned sees a set that
only loses members while it pages.
"""
