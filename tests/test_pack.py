"""Packing a dataset for upload keeps the same images, duplicate groups and folds, in fewer bytes."""

from click.testing import CliRunner

from edgeecg.train.data import group_kfold, load_table
from edgeecg.train.pack import main, pack


def _listing(path, mendeley_dir) -> int:
    """List every scan of the folder in a CSV at `path`; the number of files listed."""
    rows = ["file,label"]
    for folder in sorted(p for p in mendeley_dir.iterdir() if p.is_dir()):
        rows += [f"{f},{folder.name}" for f in sorted(folder.glob("*.jpg"))]
    path.write_text("\n".join(rows) + "\n")
    return len(rows) - 1


def _partition(groups) -> list[list[int]]:
    members: dict = {}
    for i, g in enumerate(groups.tolist()):
        members.setdefault(g, []).append(i)
    return sorted(members.values())


def test_packed_copy_trains_on_the_same_folds(tmp_path, mendeley_dir):
    # every class holds a scan three times (twice byte-identical): the pack stores each distinct file once
    source = tmp_path / "source.csv"
    files = _listing(source, mendeley_dir)
    held_out = tmp_path / "held_out.csv"
    first_mi = sorted((mendeley_dir / "myocardial_infarction").glob("*.jpg"))[0]
    held_out.write_text(f"file,label\n{first_mi},myocardial_infarction\n")

    listed = pack(source, tmp_path / "packed", [held_out])

    original = load_table(source, [held_out])
    packed = load_table(tmp_path / "packed" / "manifest.csv")
    assert listed == len(original) == len(packed) < files  # the held-out image's group is gone
    assert packed.sha256 == original.sha256 and packed.classes == original.classes
    assert (packed.labels == original.labels).all()
    assert _partition(packed.groups) == _partition(original.groups)  # ids may be renumbered, groups are the same
    stored = list((tmp_path / "packed" / "files").iterdir())
    assert len(stored) == len(set(original.sha256)) < len(original)
    for (a_train, a_val), (b_train, b_val) in zip(group_kfold(original, 2, 42), group_kfold(packed, 2, 42)):
        assert (a_train == b_train).all() and (a_val == b_val).all()


def test_missing_source_is_one_line(tmp_path):
    result = CliRunner().invoke(main, [str(tmp_path / "nope"), str(tmp_path / "out")])
    assert result.exit_code == 1 and result.output.startswith("Error: ") and "Traceback" not in result.output
