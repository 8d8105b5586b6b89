"""A trained generator as an MLflow pyfunc model: `mlflow.pyfunc.load_model(uri).predict(df)`.

predict(DataFrame with a "label" column, params={"seed": s}) → uint8 images (N, 28, 28), drawn
as `bench sample` draws them (labels in the order given, noise from the seed, batches of 1000), so
the first final_n labels 0, 1, …, 9, 0, … with the run's seed give the run's final samples exactly.
The model holds the checkpoint, recipe.json ({variant, config}) and this file (MLflow's "models from code", so
nothing is pickled); it is rebuilt with the variant's own code, so gan-bench must be installed where
it loads (it is the model's one pip requirement).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow.models
import mlflow.pyfunc


def load_trained(variant: str, config: dict[str, Any], state_file: str | Path):
    """The registered `variant` built with `config` on the CPU, with the weights of a trainer's state
    file (Trainer.save): what `bench sample` and this model both sample from."""
    import torch

    from bench import registry

    cls = registry.get(variant)
    trained = cls(cls.make_config(config), "cpu")
    trained.load_state_dict(torch.load(state_file, map_location="cpu", weights_only=True)["variant"])
    return trained


class GeneratorModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        recipe = json.loads(Path(context.artifacts["recipe"]).read_text(encoding="utf-8"))
        self.variant = load_trained(recipe["variant"], recipe["config"], context.artifacts["state"])

    def predict(self, context, model_input, params=None):  # no type hints: the logged signature validates
        import torch

        from bench import samples

        labels = torch.tensor(model_input["label"].to_numpy(), dtype=torch.int64)
        images, _ = samples.generate(self.variant, len(labels), seed=int((params or {}).get("seed", 0)),
                                     labels=labels)
        return images.numpy()


def load_variant(tracking_uri: str, model_uri: str):
    """The trained Variant inside a logged generator model (for `bench sample` without the checkpoint)."""
    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model().variant


def signature():
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

    return ModelSignature(inputs=Schema([ColSpec("long", "label")]),
                          outputs=Schema([TensorSpec(np.dtype("uint8"), (-1, 28, 28))]),
                          params=ParamSchema([ParamSpec("seed", "long", 0)]))


def log_model(checkpoint: Path, recipe: dict[str, Any]) -> str:
    """Log into the active run; returns the model's URI. recipe: {variant, config}, stored as a file
    (MLflow would copy a model_config into the run's params, beside the trial's own)."""
    from bench.records import STATE_FILE

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*input example was not provided")  # the signature is given
        recipe_file = Path(tmp) / "recipe.json"
        recipe_file.write_text(json.dumps(recipe, sort_keys=True), encoding="utf-8")
        info = mlflow.pyfunc.log_model(name="generator", python_model=__file__,
                                       artifacts={"state": str(checkpoint / STATE_FILE), "recipe": str(recipe_file)},
                                       signature=signature(), pip_requirements=[f"gan-bench=={version('gan-bench')}"])
    return info.model_uri


mlflow.models.set_model(GeneratorModel())  # what MLflow loads from this file
