r"""The paper's Wine Quality (white wines, 11 inputs) through TFDS without TensorFlow
(``spline.wine_quality``: TFDS's own builder needs TensorFlow), MLP 11-64-1.

Prepare once (online; array_record so that tfds.data_source reads it without TensorFlow):

  python -c "import tensorflow_datasets as tfds, spline.wine_quality; \
      tfds.builder('wine_quality_np/white').download_and_prepare(file_format='array_record')"
  python scripts/spline_experiment.py --config=configs/spline_wine_quality.py \
      --workdir=runs/spline_wine_quality

Variant ``quick``: a smoke run. Not measured on the project's machines (no internet); tested with
tfds.testing.mock_data.
"""

import ml_collections

from spline.study_config import apply_quick, base_config, parse_variants


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variants = parse_variants(arg)
    config = base_config()
    config.dataset.name = "wine_quality"
    config.dataset.tfds_name = "wine_quality_np/white"
    config.model.widths = (64,)
    config.train.batch_size = 64
    if "quick" in variants:
        apply_quick(config)
    return config
