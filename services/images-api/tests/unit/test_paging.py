from images_api.adapters.paging import Params


def test_values_are_numbered_in_the_order_they_are_bound_after_the_given_ones() -> None:
    params = Params(7)

    clause = f"status = {params.bind('failed')} AND provider = {params.bind('openai')}"

    assert clause == "status = $2 AND provider = $3"
    assert params.values == [7, "failed", "openai"]
