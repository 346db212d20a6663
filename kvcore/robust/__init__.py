"""kvcore-robust: fault injection against any etcd-compatible cluster, and the checkers
that read its history (linearizability, lost acknowledged writes, watch guarantees).

cli (arguments, report) -> rounds (one round: traffic, a fault, the checks) ->
cluster (member processes behind netproxy), faults, traffic; checkers and
linearizability are pure and take plain records.
"""
