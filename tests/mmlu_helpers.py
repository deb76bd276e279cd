"""Generated MMLU questions in the release layout, shared by the unit and integration layers."""

from __future__ import annotations

from pathlib import Path

# The 57 subjects of the MMLU release (hendrycks/test), as its data/test/<subject>_test.csv files name them.
MMLU_SUBJECTS = (
    "abstract_algebra anatomy astronomy business_ethics clinical_knowledge college_biology college_chemistry "
    "college_computer_science college_mathematics college_medicine college_physics computer_security "
    "conceptual_physics econometrics electrical_engineering elementary_mathematics formal_logic global_facts "
    "high_school_biology high_school_chemistry high_school_computer_science high_school_european_history "
    "high_school_geography high_school_government_and_politics high_school_macroeconomics high_school_mathematics "
    "high_school_microeconomics high_school_physics high_school_psychology high_school_statistics "
    "high_school_us_history high_school_world_history human_aging human_sexuality international_law "
    "jurisprudence logical_fallacies machine_learning management marketing medical_genetics miscellaneous "
    "moral_disputes moral_scenarios nutrition philosophy prehistory professional_accounting professional_law "
    "professional_medicine professional_psychology public_relations security_studies sociology "
    "us_foreign_policy virology world_religions"
).split()


def write_mmlu_release(root: Path, sizes: dict[str, int]) -> None:
    """Generated questions in the release layout: mmlu/test/<subject>_test.csv, no header, 6 columns."""
    import csv

    folder = root / "mmlu" / "test"
    folder.mkdir(parents=True)
    for subject, size in sizes.items():
        with (folder / f"{subject}_test.csv").open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            for i in range(size):
                writer.writerow([f"{subject}, question {i}: why?", f"w{i}", "x, y", f'"z{i}"', "v", "ABCD"[i % 4]])
