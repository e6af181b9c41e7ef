"""Packaging beyond what pyproject.toml can say: the built-in studies (``studies/*.yaml``)
ship inside the package as ``bench/study_files/``, so a non-editable install or a wheel
finds them (``bench.studies.STUDIES_DIR``). Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["bench", "bench.*"]), "bench.study_files"],
    package_dir={"bench.study_files": "studies"},
    package_data={"bench.study_files": ["*.yaml"]},
)
