#!/usr/bin/env python3
"""Checks of the economy harness's arithmetic on made-up answers (no processes started):

    python3 -m unittest discover -s bench/economy -p 'test_*.py'
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import economy  # noqa: E402

USER = "dash@corp.test"
VIEW = economy.q(stages="2")
ALL = economy.q(view="all")


def ok(t, replica, x_cache="MISS", age=None, user=USER, query=VIEW, **extra):
    e = {"kind": "list", "user": user, "query": query, "replica": replica, "t_send": t,
         "t_recv": t + 0.01, "status": 200, "x_cache": x_cache}
    if age is not None:
        e["age"] = age
    e.update(extra)
    return e


def refused(t, replica, user=USER, query=VIEW):
    return {"kind": "list", "user": user, "query": query, "replica": replica, "t_send": t,
            "t_recv": t + 0.01, "status": 429, "x_cache": None, "retry_after": "3"}


def create(t, status=201, name="New Co"):
    return {"kind": "create", "user": "crm@corp.test", "replica": 0, "t_send": t, "t_recv": t + 0.05,
            "status": status, "name": name}


def run(events, max_stale=300, base=300):
    return economy.analyse(sorted(events, key=lambda e: e["t_send"]), max_stale, base)


class CopySomewhere(unittest.TestCase):
    def test_a_refusal_while_another_replica_held_a_current_copy_counts(self):
        r = run([ok(10, replica=1), refused(50, replica=0)])
        self.assertEqual(r["client_429_lists"], 1)
        self.assertEqual(r["client_429_with_copy"], 1)
        d = r["client_429_with_copy_details"][0]
        self.assertEqual((d["replica"], d["copy_from_replica"]), (0, 1))
        self.assertAlmostEqual(d["copy_age_s"], 40, places=1)

    def test_a_copy_from_before_a_write_does_not(self):
        r = run([ok(10, replica=1), create(20), refused(50, replica=0)])
        self.assertEqual(r["client_429_with_copy"], 0)
        self.assertEqual(r["client_429_with_only_an_outdated_copy"], 1)
        self.assertEqual(r["client_429_never_answered_before"], 0)
        # A copy fetched after the write does.
        r = run([ok(10, replica=1), create(20), ok(30, replica=2), refused(50, replica=0)])
        self.assertEqual(r["client_429_with_copy"], 1)

    def test_a_write_answered_after_the_refusal_was_sent_is_not_held_against_the_copy(self):
        r = run([ok(10, replica=1), refused(50, replica=0), create(49.99)])
        self.assertEqual(r["client_429_with_copy"], 1)

    def test_a_write_answered_the_instant_the_refused_list_left_is_held_against_the_copy(self):
        # The CRM lists in the same 0.1 ms its 201 came back: that write precedes the list
        # (found in a run: counted as "a copy existed" before this).
        r = run([ok(10, replica=0), create(49.95), refused(50.0, replica=0)])
        self.assertEqual(r["client_429_with_copy"], 0)

    def test_a_hit_dates_its_copy_by_age_surely_after_the_write(self):
        # Served at 40 with Age 15: made at 25 (24 at the earliest), after the write at 20.
        r = run([create(20), ok(40, replica=1, x_cache="HIT", age=15), refused(50, replica=0)])
        self.assertEqual(r["client_429_with_copy"], 1)
        # Age 19: made at 21, possibly 20 (the header's whole seconds): not surely after it.
        r = run([create(20), ok(40, replica=1, x_cache="HIT", age=19), refused(50, replica=0)])
        self.assertEqual(r["client_429_with_copy"], 0)

    def test_any_answer_with_an_age_is_dated_by_it(self):
        # A MISS normally has no Age; one that has (an L2 copy, say) is as old as it says.
        r = run([ok(40, replica=1, x_cache="MISS", age=20), create(25), refused(50, replica=0)])
        self.assertEqual(r["client_429_with_copy"], 0)
        # Without Age, a MISS was fetched while in flight: at 40, after the write.
        r = run([ok(40, replica=1, x_cache="MISS"), create(25), refused(50, replica=0)])
        self.assertEqual(r["client_429_with_copy"], 1)

    def test_a_copy_past_max_stale_or_another_users_or_list_does_not(self):
        self.assertEqual(run([ok(10, 1), refused(400, 0)])["client_429_with_copy"], 0)
        self.assertEqual(run([ok(10, 1), refused(200, 0)], max_stale=100)["client_429_with_copy"], 0)
        self.assertEqual(run([ok(10, 1, user="other@corp.test"), refused(50, 0)])["client_429_with_copy"], 0)
        self.assertEqual(run([ok(10, 1, query=economy.q(stages="3")), refused(50, 0)])["client_429_with_copy"], 0)
        # Answered only after the refused request had left: not "earlier".
        r = run([refused(50, 0), ok(50.005, 1)])
        self.assertEqual((r["client_429_with_copy"], r["client_429_never_answered_before"]), (0, 1))


    def test_a_create_leaves_leads_and_deals_copies_current_and_deals_are_shared(self):
        leads = economy.q(economy.LEADS, status="new")
        r = run([ok(10, 1, query=leads), create(20), refused(50, 0, query=leads)])
        self.assertEqual(r["client_429_with_copy"], 1)
        # A leads copy is the user's own ...
        r = run([ok(10, 1, user="other@corp.test", query=leads), refused(50, 0, query=leads)])
        self.assertEqual(r["client_429_with_copy"], 0)
        # ... a deals list has no userId: one copy for every user of the key.
        deals = economy.q(economy.DEALS, phases="negotiation")
        r = run([ok(10, 1, user="other@corp.test", query=deals), refused(50, 0, query=deals)])
        self.assertEqual(r["client_429_with_copy"], 1)
        self.assertEqual(r["distinct_pairs"], 1)


class Served(unittest.TestCase):
    def test_counts_and_ages(self):
        events = [ok(1, 0), ok(2, 1, x_cache="HIT", age=1), ok(3, 2, x_cache="STALE", age=40),
                  ok(4, 0, x_cache="HIT", age=9), refused(5, 0)]
        r = run(events)
        self.assertEqual((r["lists_asked"], r["lists_200"], r["lists_without_upstream"]), (5, 4, 3))
        self.assertEqual(r["x_cache_of_200"], {"MISS": 1, "HIT": 2, "STALE": 1})
        # Ages 0 (a MISS has none), 1, 9, 40: nearest rank.
        self.assertEqual((r["age_p50_s"], r["age_p95_s"], r["age_max_s"]), (1, 40, 40))
        self.assertEqual(r["distinct_pairs"], 1)
        self.assertEqual(r["stale_by_detail"], {"none": 1})
        r = run([ok(3, 2, x_cache="STALE", age=40, cache_status="journeybee-gateway; hit; ttl=-10; detail=budget")])
        self.assertEqual((r["stale_by_detail"], r["cache_status_on_200"]), ({"budget": 1}, 1))

    def test_percentile_is_nearest_rank(self):
        self.assertEqual(economy.pct(list(range(1, 101)), 95), 95)
        self.assertEqual(economy.pct([7], 50), 7)
        self.assertIsNone(economy.pct([], 50))


class ReadYourWrites(unittest.TestCase):
    def test_the_list_after_a_create_must_name_it(self):
        good = ok(20.1, 1, query=ALL, names=["New Co", "Old Co"], total=301,
                  after_create={"status": 201, "name": "New Co"})
        bad = ok(40.1, 2, query=ALL, x_cache="HIT", age=12, names=["Old Co"], total=301,
                 after_create={"status": 201, "name": "Newer Co"})
        r = run([create(20, name="New Co"), good, create(40, name="Newer Co"), bad])
        self.assertEqual(r["read_your_writes"]["checked"], 2)
        self.assertEqual(r["read_your_writes"]["violations"], 1)
        # After a refused create there is nothing to read back.
        r = run([create(20, status=429), ok(20.1, 1, query=ALL, names=["Old Co"], total=300,
                                             after_create={"status": 429, "name": "X"})])
        self.assertEqual(r["read_your_writes"]["checked"], 0)

    def test_any_users_unfiltered_list_counts_every_acknowledged_create(self):
        events = [create(20), ok(10, 0, query=ALL, total=300), ok(20.02, 0, query=ALL, total=300),
                  ok(30, 1, user="x@corp.test", query=ALL, total=301),
                  ok(31, 2, user="y@corp.test", query=ALL, x_cache="HIT", age=25, total=300)]
        r = run(events)
        # The list sent at 20.02 left before the 201 came back (20.05): not checked.
        self.assertEqual(r["read_your_writes_any_user"]["checked"], 2)
        self.assertEqual(r["read_your_writes_any_user"]["violations"], 1)


class Peak(unittest.TestCase):
    def test_sampled_peak_is_the_largest_rise_within_a_window(self):
        samples = [{"t": t, "requests": n} for t, n in [(0, 0), (30, 50), (60, 90), (90, 100), (120, 180)]]
        self.assertEqual(economy.sampled_peak(samples, 60), 90)


if __name__ == "__main__":
    unittest.main()
