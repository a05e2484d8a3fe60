"""A run's test split and the scores of the teacher and the student on it.

The split is opened and checked before any training (`run_data`); streamed datasets (ImageNet,
NYUv2) and smoke tests are read example by example each evaluation (`stream_eval`), in-memory ones
are uploaded once and kept on device (`on_device.put_split`).
"""

import functools

from fastdfkd_jax import components, data, run_data
from fastdfkd_jax.data.streaming import ArraySource
from fastdfkd_jax.evaluation import on_device, streamed


class SplitScorer:
    """The run's test split and its evaluators: `teacher(variables)` and `student(variables)` ->
    `{metric: value}` (`streamed.METRICS` of the task).

    The split is opened and checked on construction, before any training (`run_data`). Streamed
    datasets (ImageNet, NYUv2) and smoke tests are read example by example each evaluation
    (`stream_eval`); in-memory ones are uploaded once and kept on device (`on_device.put_split`).
    """

    def __init__(self, parts: components.Components, workdir: str):
        config, info, mesh = parts.config, parts.info, parts.mesh
        self.metric_names = streamed.METRICS[info.task]
        if run_data.streamed(config.dataset.name) or config.smoke_test:
            source = run_data.open_test_split(config, info, workdir)
            run_data.check_test_split(source, info)
            self._split = source
            make = functools.partial(
                streamed.StreamEvaluator, info=info, mesh=mesh, batch_size=config.eval_batch_size
            )
            self._score = dict
        else:
            split = data.load_split(config.dataset.name, "test", config.dataset.data_dir or None)
            run_data.check_test_split(ArraySource(split), info)
            self._split = on_device.put_split(split, mesh, config.eval_batch_size)
            make = functools.partial(on_device.Evaluator, mean=info.mean, std=info.std, mesh=mesh)
            self._score = lambda accuracy: {"accuracy": accuracy}
        self._teacher, self._student = make(parts.teacher), make(parts.student)

    def compile(self, teacher_vars: dict, student_vars: dict) -> float:
        """Compiles both evaluation steps ahead of time; returns their seconds."""
        return self._teacher.compile(teacher_vars, self._split) + self._student.compile(
            student_vars, self._split
        )

    def teacher(self, variables: dict) -> streamed.Scores:
        return self._score(self._teacher(variables, self._split))

    def student(self, variables: dict) -> streamed.Scores:
        return self._score(self._student(variables, self._split))
