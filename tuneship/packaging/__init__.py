"""Packaging: model card, folder verification and the publishable package."""

from tuneship.packaging.card import CardInfo, build_model_card, read_base_license
from tuneship.packaging.package import PackageResult, package_model
from tuneship.packaging.verify import ModelFolderError, VerifyReport, verify_model_folder

__all__ = [
    "CardInfo",
    "ModelFolderError",
    "PackageResult",
    "VerifyReport",
    "build_model_card",
    "package_model",
    "read_base_license",
    "verify_model_folder",
]
