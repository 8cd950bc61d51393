"""One run's facts, assembled once: the flow, the DVC stages and the bench all build models, tensors and method
settings through a ``RunContext`` instead of re-deriving them at each call site.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

import components.unlearning  # noqa: F401  (registers the methods)
from components.config import ForgetKind, PipelineConfig, forget_kind
from components.data.types import DatasetBundle, ImageSet
from components.hashing import canonical_sha256
from components.models.backbones import Backbone, build_backbone
from components.runtime import Callback, resolve_device
from components.training import TrainConfig, train_classifier
from components.unlearning.base import (
    LabeledTensors,
    MethodConfig,
    UnlearningResult,
    UnlearningTask,
    get_method,
)
from components.verification.evaluate import evaluate_model
from components.verification.heldout import HeldoutSplit, split_heldout

# Source files whose change changes what a given recipe trains: part of every cached model's key. The training
# loop, the model definitions, the runtime helpers (batching, seeded generators) and the pixel preprocessing
# (``DatasetBundle.to_tensor``).
_TRAINING_CODE = ("training.py", "models/backbones.py", "runtime.py", "data/types.py")


@functools.cache
def training_code_sha256() -> str:
    """sha256 over the training loop, backbones and runtime sources (a cache key part: new code, new model)."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for relative in _TRAINING_CODE:
        digest.update((root / relative).read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class RunContext:
    """Device, data bundle, training recipe, architecture, seed and (for a deletion) its forget kind.

    Build it with ``RunContext.create``; it is immutable, so every stage of one run sees the same facts.
    """

    config: PipelineConfig
    bundle: DatasetBundle
    device: torch.device
    recipe: TrainConfig
    architecture: str
    seed: int
    forgotten_classes: tuple[int, ...] = ()
    scenario: str | None = None

    @classmethod
    def create(
        cls,
        config: PipelineConfig,
        bundle: DatasetBundle,
        *,
        forgotten_classes: Sequence[int] = (),
        scenario: str | None = None,
        seed: int | None = None,
        architecture: str | None = None,
        device: torch.device | None = None,
    ) -> RunContext:
        """The context of one run on ``bundle``; ``architecture`` overrides the recipe's and the dataset's model."""
        recipe = config.train.recipe(bundle.name)
        return cls(
            config=config,
            bundle=bundle,
            device=device or resolve_device(config.base.device),
            recipe=recipe,
            architecture=architecture or recipe.model or bundle.default_model,
            seed=config.base.seed if seed is None else seed,
            forgotten_classes=tuple(int(c) for c in forgotten_classes),
            scenario=scenario,
        )

    def for_batch(self, forgotten_classes: Sequence[int], scenario: str | None = None) -> RunContext:
        """The same run, for a forget set that removes ``forgotten_classes`` (empty: samples of kept classes)."""
        return dataclasses.replace(self, forgotten_classes=tuple(int(c) for c in forgotten_classes), scenario=scenario)

    # -- facts ----------------------------------------------------------------------------------------------
    @property
    def forget_kind(self) -> ForgetKind:
        return forget_kind(self.forgotten_classes)

    @property
    def serving_method(self) -> str:
        """The method that serves this run's deletion (``pipeline.method_for`` its forget kind)."""
        return self.config.pipeline.method_for(self.forget_kind)

    def recipe_tags(self) -> dict[str, str]:
        """What determines a trained model besides its sample IDs: recipe, architecture, seed, training and model
        code, and the dataset's preprocessing (normalisation, image shape, classes)."""
        bundle = self.bundle
        preprocessing = {
            "dataset": bundle.name,
            "mean": list(bundle.mean),
            "std": list(bundle.std),
            "shape": list(bundle.image_shape),
            "classes": bundle.num_classes,
        }
        return {
            "recipe_sha256": canonical_sha256(self.recipe.model_dump()),
            "model_arch": self.architecture,
            "seed": str(self.seed),
            "training_code_sha256": training_code_sha256()[:16],
            "preprocessing_sha256": canonical_sha256(preprocessing)[:16],
        }

    def method_settings(self, method: str) -> dict[str, object]:
        """The merged settings of ``method`` for this dataset, forget kind and scenario (params.yaml precedence)."""
        spec = get_method(method)
        return self.config.unlearn.settings(spec.section, self.bundle.name, self.forget_kind, method, self.scenario)

    def method_config(self, method: str) -> MethodConfig:
        return self.config.unlearn.method_config(method, self.bundle.name, self.forget_kind, self.scenario)

    # -- models and data ------------------------------------------------------------------------------------
    def build_model(self) -> Backbone:
        """A freshly initialised backbone (on the CPU; callers move it)."""
        return build_backbone(self.architecture, self.bundle.image_shape, self.bundle.num_classes)

    def tensors(self, images: ImageSet) -> LabeledTensors:
        """Normalised images and labels on the run's device."""
        return LabeledTensors(
            images=self.bundle.to_tensor(images.images, self.device),
            labels=torch.as_tensor(images.labels, dtype=torch.long, device=self.device),
        )

    def train(self, data: LabeledTensors, callbacks: Sequence[Callback] = ()) -> tuple[Backbone, float]:
        """Train a fresh model with the recipe (original on D, reference on D_r); (model, seconds).

        The initialisation is drawn from ``torch.manual_seed(seed)``, so the same data and seed give the same model.
        """
        torch.manual_seed(self.seed)
        model = self.build_model().to(data.images.device)
        result = train_classifier(model, data.images, data.labels, self.recipe, self.seed, callbacks)
        return model, result.seconds

    def heldout_split(self, val: ImageSet) -> HeldoutSplit:
        """The validation split divided between the unlearning loop's monitors and certification (seeded, fixed
        for the run's seed, so every batch of a chain divides it alike)."""
        return split_heldout(val, self.config.verify.certification.monitor_fraction, self.seed)

    def unlearning_task(
        self,
        original: Backbone,
        retain: LabeledTensors,
        forget: LabeledTensors,
        val: LabeledTensors | None = None,
        copy_original: bool = False,
    ) -> UnlearningTask:
        """What a method receives; ``copy_original`` protects a model the caller keeps using (e.g. the champion)."""
        model = copy.deepcopy(original) if copy_original else original
        return UnlearningTask(
            original=model.to(self.device).eval(),
            forget=forget,
            retain=retain,
            num_classes=self.bundle.num_classes,
            seed=self.seed,
            build_model=self.build_model,
            train_config=self.recipe,
            val=val,
        )

    def unlearn(self, method: str, task: UnlearningTask, callbacks: Sequence[Callback] = ()) -> UnlearningResult:
        """Run ``method`` with its settings for this context on ``task``."""
        return get_method(method).factory(self.method_config(method))(task, callbacks)

    def evaluate(
        self,
        model: torch.nn.Module,
        retain: LabeledTensors,
        forget: LabeledTensors,
        test: LabeledTensors,
        batch_size: int = 1024,
    ) -> dict[str, float | None]:
        """Both protocols' metrics of ``model`` on these sets, for this context's forget kind."""
        return evaluate_model(
            model.to(self.device), retain, forget, test, self.forgotten_classes, self.seed, batch_size
        )
