r"""The paper's Wine Quality (white wines, 11 inputs) through TFDS without TensorFlow
(``spline.wine_quality``: TFDS's own builder needs TensorFlow).

Prepare once (online; array_record so that tfds.data_source reads it without TensorFlow):

  python -c "import tensorflow_datasets as tfds, spline.wine_quality; \
      tfds.builder('wine_quality_np/white').download_and_prepare(file_format='array_record')"
  python scripts/spline_experiment.py --config=configs/spline_wine_quality.py \
      --workdir=runs/spline_wine_quality

Not measured on this machine (no internet); tested with tfds.testing.mock_data.
"""

from configs import spline_diabetes


def get_config():
    config = spline_diabetes.get_config()
    config.dataset.name = "wine_quality"
    config.dataset.tfds_name = "wine_quality_np/white"
    config.train.epochs = 100
    config.train.batch_size = 128
    return config
