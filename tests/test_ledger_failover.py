

#: CI races this many tokens (and a tenth as many daily-limit rounds) on each
#: topology; the full 10,000 is `python -m tools.faults.race_replicated`.
REPLICATED_RACES = int(os.environ.get("TRUNKKEY_REPLICATED_RACES", "1000"))


@pytest.mark.parametrize("kind", ["postgres_pair", "redis_cluster"])
def test_races_on_the_replicated_topologies_have_exactly_one_winner(kind: str) -> None:
    try:
        results = race_topology(
            kind, races=REPLICATED_RACES, rounds=REPLICATED_RACES // 10, procs=2, threads=4
        )
    except ServerUnavailable as exc:
        _unavailable(exc)
    for result in results:
        assert result.ok, result
