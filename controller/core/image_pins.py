"""A task's image tag pinned at submit to the digest it names then, through the registry port."""

from __future__ import annotations

from controller.domain.images import ImageRef, RegistryError, ResolvedImage
from controller.domain.spec import TaskSpec
from controller.errors import InvalidInput
from controller.ports import ImageRegistry


def image_field(spec: TaskSpec) -> tuple[list[str | int], str] | None:
    """Where SPEC names its image (`image`, else `environment.image`) and the reference."""
    if spec.image:
        return ["spec", "image"], spec.image
    if spec.environment is not None and spec.environment.image:
        return ["spec", "environment", "image"], spec.environment.image
    return None


def resolve(spec: TaskSpec, registry: ImageRegistry | None) -> ResolvedImage | None:
    """The digest SPEC's image names in its registry now; 422 on the field when it names none."""
    found = image_field(spec)
    if found is None or registry is None:
        return None
    loc, text = found
    try:
        ref = ImageRef.parse(text)
    except ValueError as exc:
        raise InvalidInput(loc, str(exc)) from exc
    try:
        digest = registry.digest(ref)
    except RegistryError as exc:
        raise InvalidInput(
            loc, f"cannot ask the registry {ref.host} for {text!r}: {exc}; submit again later"
        ) from exc
    if digest is None:
        raise InvalidInput(
            loc,
            f"image {text!r} is not in the registry {ref.host}: it has no manifest "
            f"{ref.reference!r} in {ref.repository!r} (push the image, or fix the reference)",
        )
    return ResolvedImage(requested=text, digest=digest, pinned=ref.pinned(digest))


def pin(spec: TaskSpec, image: ResolvedImage | None) -> TaskSpec:
    """SPEC naming IMAGE by its digest wherever it named it by a tag."""
    if image is None:
        return spec
    update: dict[str, object] = {}
    if spec.image:
        update["image"] = image.pinned
    if spec.environment is not None and spec.environment.image:
        update["environment"] = spec.environment.model_copy(update={"image": image.pinned})
    return spec.model_copy(update=update)
