"""Packaging for latticehub: JupyterHub extensions for an HPC facility's ML groups."""

from setuptools import find_packages, setup

setup(
    name="latticehub",
    version="0.1.0",
    description=(
        "JupyterHub application server for HPC machine-learning groups: group-limited "
        "Docker spawners, experiment tracking, batch jobs and notebook panels"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.11",
    packages=find_packages(include=["latticehub*", "spawner*", "hub_ext*", "widgets*", "flows*"]),
    package_data={
        "spawner": ["templates/*.html"],
        "hub_ext": ["hub_templates/*.html"],
        "hub_ext.common": ["templates/*.html"],
        "hub_ext.experiments.dashboard": ["templates/*.html", "static/*"],
        "hub_ext.quotas": ["templates/*.html"],
        # Alembic's template for new revisions (the revisions are modules of the packages)
        "hub_ext.experiments.store.migrations": ["script.py.mako"],
        "hub_ext.quotas.accounting.migrations": ["script.py.mako"],
    },
    install_requires=[
        "jupyterhub>=6",
        "dockerspawner>=14",
        "docker>=7",
        "traitlets>=5.9",
        "tornado>=6.4",
        "prometheus_client>=0.20",
        "sqlalchemy>=2",
        "numpy>=1.26",  # metric blocks: histories joined, sorted and de-duplicated as arrays
        "alembic>=1.13",  # schema migrations of the tracking and usage databases
        "requests>=2.31",
        "jupyterhub-idle-culler>=2.0",  # cull_idle(logger=, cull_arbiter=)
    ],
    extras_require={
        "train": ["torch>=2.4", "numpy>=1.26"],
        "widgets": ["ipywidgets>=8", "pandas>=2", "matplotlib>=3.8", "requests>=2.31"],
        "postgres": ["psycopg[binary]>=3.2"],
        "test": [
            "pytest>=8",
            "pytest-asyncio>=0.24",
            "requests>=2.31",
            "ruff>=0.6",
            "mypy>=1.11",
            "psycopg[binary]>=3.2",
            "mlflow-skinny==3.17.2",
            "pandas>=2",
            "playwright>=1.50",
            "schemathesis>=4",
            "hypothesis>=6.100",
            # flows.fused's kernels are tested on CPU in Triton's interpreter.
            "triton==3.6.0; platform_system == 'Linux'",
        ],
    },
    entry_points={
        "console_scripts": ["latticehub = hub_ext.experiments.cli:main"],
        "jupyterhub.spawners": [
            "groupdocker = spawner:GroupLimitDockerSpawner",
            "groupswarm = spawner:GroupLimitSwarmSpawner",
        ],
    },
    classifiers=[
        "Framework :: Jupyter :: JupyterHub",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Physics",
    ],
)
