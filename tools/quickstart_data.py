#!/usr/bin/python3
"""Writes the quickstart's demo feature files (configs/quickstart/*.csv, *.jsonl).

Seeded, so the files are reproducible: python3 tools/quickstart_data.py
"""
import csv
import json
import os
import random

OUT = os.path.join(os.path.dirname(__file__), "..", "configs", "quickstart")
CUISINES = ["pizza", "sushi", "burger", "thai", "mexican"]


def main():
    rnd = random.Random(7)
    with open(os.path.join(OUT, "stores.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["id", "store_avg_rating", "store_num_ratings", "store_delivery_minutes",
                    "store_price_level", "store_cuisine", "store_is_open"])
        for i in range(40):
            sid = 1426727 + i
            # A few stores leave cells empty: those features take their defaults.
            rating = "" if i % 13 == 5 else round(rnd.uniform(3.0, 5.0), 2)
            w.writerow([sid, rating, rnd.randint(0, 4000), round(rnd.uniform(12, 60), 1),
                        rnd.randint(1, 4), CUISINES[i % len(CUISINES)], "true" if i % 9 else "false"])
    with open(os.path.join(OUT, "consumers.jsonl"), "w") as f:
        for i in range(10):
            row = {
                "id": 1001 + i,
                "consumer_order_count": rnd.randint(0, 300),
                "consumer_avg_spend": round(rnd.uniform(12, 80), 2),
                "consumer_embedding": [round(rnd.uniform(-1, 1), 3) for _ in range(8)],
                "consumer_recent_cuisines": rnd.sample(CUISINES, 2),
            }
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
