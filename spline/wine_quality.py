"""The paper's Wine Quality data (UCI) as a TFDS builder that needs no TensorFlow.

TFDS's stock ``wine_quality`` builder declares its features with ``tf.float32`` and so cannot be
constructed without TensorFlow. This builder has the same features (11 physico-chemical inputs
under ``features``, the integer ``quality``) with numpy dtypes, and reads the UCI CSV files with
``csv``/``epath`` only, so ``download_and_prepare(file_format="array_record")`` and
``tfds.data_source("wine_quality_np/white")`` work without TensorFlow. Importing this module
registers it.
"""

from __future__ import annotations

import csv

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

# UCI's files (the URLs TFDS's own builder uses).
URLS = {
    "white": "https://archive.ics.uci.edu/ml/machine-learning-databases/wine-quality/"
    "winequality-white.csv",
    "red": "https://archive.ics.uci.edu/ml/machine-learning-databases/wine-quality/"
    "winequality-red.csv",
}
FEATURES = (
    "fixed acidity",
    "volatile acidity",
    "citric acid",
    "residual sugar",
    "chlorides",
    "free sulfur dioxide",
    "total sulfur dioxide",
    "density",
    "pH",
    "sulphates",
    "alcohol",
)


class WineQualityNp(tfds.core.GeneratorBasedBuilder):
    """Wine Quality (white or red), one ``train`` split, TensorFlow-free."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name=name, description=f"{name} wines") for name in URLS
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="UCI Wine Quality (Cortez et al. 2009).",
            features=tfds.features.FeaturesDict(
                {
                    "quality": np.int32,
                    "features": {name: np.float32 for name in FEATURES},
                }
            ),
            supervised_keys=("features", "quality"),
            homepage="https://archive.ics.uci.edu/ml/datasets/wine+quality",
        )

    def _split_generators(self, dl_manager):
        path = dl_manager.download(URLS[self.builder_config.name])
        return {"train": self._generate_examples(path)}

    def _generate_examples(self, path):
        with epath.Path(path).open() as f:
            for index, row in enumerate(csv.DictReader(f, delimiter=";")):
                yield (
                    index,
                    {
                        "quality": int(row.pop("quality")),
                        "features": {name: float(row[name]) for name in FEATURES},
                    },
                )
