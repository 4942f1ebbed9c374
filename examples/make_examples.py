"""Regenerate the instruction and classification example datasets in this folder.

    python examples/make_examples.py

The output is deterministic (fixed seed), so the committed files are exactly what this
script writes. Every sentence comes from the lists below, written for this project.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

HERE = Path(__file__).parent

# (from unit, to unit, symbol from, symbol to, factor)
LINEAR = [
    ("kilometres", "miles", "km", "mi", 0.621371),
    ("miles", "kilometres", "mi", "km", 1.609344),
    ("metres", "feet", "m", "ft", 3.28084),
    ("feet", "metres", "ft", "m", 0.3048),
    ("inches", "centimetres", "in", "cm", 2.54),
    ("centimetres", "inches", "cm", "in", 0.393701),
    ("kilograms", "pounds", "kg", "lb", 2.20462),
    ("pounds", "kilograms", "lb", "kg", 0.453592),
    ("litres", "US gallons", "L", "gal", 0.264172),
    ("US gallons", "litres", "gal", "L", 3.78541),
    ("ounces", "grams", "oz", "g", 28.3495),
    ("grams", "ounces", "g", "oz", 0.035274),
]
PHRASINGS = [
    "Convert {v} {a} to {b}.",
    "How many {b} is {v} {a}?",
    "What is {v} {a} in {b}?",
    "{v} {a} in {b}?",
    "Please convert {v} {a} into {b}.",
    "I have {v} {a}. How much is that in {b}?",
]


def _fmt(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


def instruction_rows(rng: random.Random) -> list[dict]:
    rows = []
    for a, b, sa, sb, factor in LINEAR:
        for _ in range(22):
            v = rng.choice([rng.randint(1, 100), rng.randint(1, 20) * 5, rng.randint(101, 1000)])
            prompt = rng.choice(PHRASINGS).format(v=v, a=a, b=b)
            result = _fmt(v * factor)
            rows.append({"prompt": prompt, "response":
                         f"{v} {sa} = {result} {sb}\n(1 {sa} = {factor:g} {sb}, so "
                         f"{v} × {factor:g} = {result})"})
    for _ in range(28):
        c = rng.randint(-30, 45)
        f = c * 9 / 5 + 32
        rows.append({"prompt": rng.choice(PHRASINGS).format(v=c, a="degrees Celsius",
                                                           b="Fahrenheit"),
                     "response": f"{c} °C = {_fmt(f)} °F\n(°F = °C × 9/5 + 32, so "
                                 f"{c} × 9/5 + 32 = {_fmt(f)})"})
    for _ in range(28):
        f = rng.randint(-20, 110)
        c = (f - 32) * 5 / 9
        rows.append({"prompt": rng.choice(PHRASINGS).format(v=f, a="degrees Fahrenheit",
                                                           b="Celsius"),
                     "response": f"{f} °F = {_fmt(c)} °C\n(°C = (°F − 32) × 5/9, so "
                                 f"({f} − 32) × 5/9 = {_fmt(c)})"})
    rng.shuffle(rows)
    seen, unique = set(), []
    for row in rows:
        if row["prompt"] not in seen:
            seen.add(row["prompt"])
            unique.append(row)
    return unique


TOPICS = {
    "weather": (["The forecast says", "This morning", "By the afternoon", "Overnight",
                 "All week"],
                ["heavy rain will move in from the coast", "the fog did not lift until noon",
                 "temperatures climbed above thirty degrees", "a cold front brought snow",
                 "strong winds knocked down branches", "the sky stayed clear and dry",
                 "thunderstorms rolled over the hills", "frost covered the fields"]),
    "sport": (["In the final minute", "After the break", "Last season", "On Saturday",
               "In the second half"],
              ["the striker scored from a corner", "the team defended a narrow lead",
               "the goalkeeper saved a penalty", "the runner broke the club record",
               "the coach changed the line-up", "the visitors equalised late on",
               "the captain lifted the trophy", "the referee sent off a defender"]),
    "cooking": (["For this recipe", "Before serving", "While the oven heats",
                 "To start", "Once it cools"],
                ["whisk the eggs with a pinch of salt", "simmer the sauce for ten minutes",
                 "fold the flour in gently", "roast the peppers until the skins blister",
                 "knead the dough until it is smooth", "season the soup with fresh herbs",
                 "let the bread rest on a rack", "chop the onions finely"]),
    "travel": (["On our trip", "At the station", "From the harbour", "After landing",
                "Along the route"],
               ["we caught the night train to the border", "the ferry left two hours late",
                "we hired bikes to explore the old town", "our hostel overlooked the bay",
                "the mountain road had stunning views", "we changed money at the airport",
                "the guide showed us the castle ruins", "we booked a room near the market"]),
}


def classification_rows(rng: random.Random) -> list[dict]:
    rows = []
    for label, (openers, clauses) in TOPICS.items():
        pairs = [(o, c) for o in openers for c in clauses]
        rng.shuffle(pairs)
        for opener, clause in pairs:
            rows.append({"text": f"{opener}, {clause}.", "label": label})
    rng.shuffle(rows)
    return rows


def main() -> None:
    rng = random.Random(5)
    inst = instruction_rows(rng)
    with open(HERE / "instruction" / "unit_conversions.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in inst)
    cls = classification_rows(rng)
    with open(HERE / "classification" / "topics.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(cls)
    print(f"{len(inst)} instruction rows, {len(cls)} classification rows")


if __name__ == "__main__":
    main()
