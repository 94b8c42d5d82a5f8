from images_api.adapters.paging import Params


def test_values_are_numbered_in_the_order_they_are_bound() -> None:
    params = Params()

    clause = f"account_id = {params.bind(7)} AND status = {params.bind('failed')} AND provider = {params.bind('openai')}"

    assert clause == "account_id = $1 AND status = $2 AND provider = $3"
    assert params.values == [7, "failed", "openai"]
