"""The SST-2 study of the thesis, a preset of the correlation study (:mod:`attnlens.experiments.study`).

How well does each attention method agree with input gradients on the SST-2 sentences? Same
runner, options, files and numbers as ``attnlens study --data <folder>/sst2/<split>.tsv``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from attnlens._options import option
from attnlens.experiments.study import StudyOptions, StudyResult, run_study, validate_study
from attnlens.experiments.writers import write_study_outputs

SPLITS = ("dev", "train")


@dataclass(frozen=True)
class SST2StudyConfig(StudyOptions):
    """Options of ``attnlens sst2`` (see :class:`~attnlens.experiments.study.StudyOptions` for the rest).

    Attributes:
        data: folder holding ``sst2/{train,dev}.tsv``; None uses ``$ATTNLENS_DATA``, else the packaged copy.
        split: ``"dev"`` or ``"train"``.
    """

    data: str | None = field(default=None, metadata=option(
        "folder holding sst2/{train,dev}.tsv (default: $ATTNLENS_DATA, else the copy packaged with attnlens)", metavar="DIR",
        aliases=("data_dir",)))
    split: str = field(default="dev", metadata=option("SST-2 split", choices=SPLITS))

    name = "sst2"
    split_choices = SPLITS

    def title(self, examples) -> str:
        return f"SST-2 {self.split}"

    def load_examples(self):
        """The SST-2 sentences of `split` (the first `limit`)."""
        from attnlens.datasets import load_sst2_examples  # noqa: PLC0415

        examples = load_sst2_examples(self.split, data_dir=self.data)
        if len(examples) == 0:
            raise ValueError(f"Expected the {self.split} split to hold sentences, but {examples.source} has none.")
        return examples if self.limit is None else examples[: self.limit]


def run_sst2_study(config: SST2StudyConfig, *, adapter=None, progress=None) -> StudyResult:
    """Run the SST-2 correlation study (:func:`~attnlens.experiments.study.run_study` on SST-2)."""
    return run_study(config, adapter=adapter, progress=progress)


def validate_sst2_config(config: SST2StudyConfig):
    """Check every option before anything is loaded; return the expanded methods."""
    return validate_study(config)


def write_sst2_outputs(result: StudyResult, out_dir: str):
    """Write ``results.json``, ``results.csv``, ``per_example.csv``, ``table.md`` and ``layers.png``."""
    return write_study_outputs(result.summary, out_dir)


__all__ = ["SPLITS", "SST2StudyConfig", "run_sst2_study", "validate_sst2_config", "write_sst2_outputs"]
