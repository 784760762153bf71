"""`prepared_ahead`: scoring builds the next window's inputs in a thread while the network runs."""
import threading
import time

import pytest

from apps.fraud.scorer import prepared_ahead


def test_items_come_back_in_order_with_one_prepared_at_a_time():
    running, most = [0], [0]
    lock = threading.Lock()

    def prepare(item):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        return item * 10

    assert list(prepared_ahead(prepare, [1, 2, 3, 4])) == [10, 20, 30, 40]
    assert most[0] == 1
    assert list(prepared_ahead(prepare, [])) == []


def test_an_error_while_preparing_reaches_the_caller_at_that_item():
    def prepare(item):
        if item == 2:
            raise ValueError("bad window")
        return item

    got = []
    with pytest.raises(ValueError, match="bad window"):
        for value in prepared_ahead(prepare, [0, 1, 2, 3]):
            got.append(value)
    assert got == [0, 1]
