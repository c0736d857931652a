"""Pure conda knowledge: identifier rules, package archives, records and published index files.

Nothing here touches the database, the blob store or the network; every
function is synchronous and CPU-bound, so callers run the slow ones in a thread.
Modules: `names` (CEP 26 identifiers), `archive` (reading a package's info/),
`records` (repodata records), `repodata` (repodata.json and friends),
`shards` (CEP 16 sharded repodata).
"""
