"""Read-only lookups the pages share. They live beside the repositories that write the same
rows; this module re-exports only the reads, so a page never imports a module that writes."""

from db.repo.alerts import AlertInfo, list_alerts
from db.repo.audit import AuditEntry, list_events
from db.repo.channels import ChannelInfo, get_channel, list_channels
from db.repo.datasets import DatasetInfo, get_dataset, get_dataset_by_name, list_datasets
from db.repo.feedback import annotation_history, count_training_items
from db.repo.jobs import RETRYABLE, JobInfo, count_jobs, get_job, job_epochs, job_logs, list_jobs
from db.repo.models import VersionInfo, get_version, list_models, training_items_of
from db.repo.workers import WorkerInfo, list_workers, live_workers_for

__all__ = [
    "AlertInfo",
    "list_alerts",
    "RETRYABLE",
    "AuditEntry",
    "ChannelInfo",
    "DatasetInfo",
    "JobInfo",
    "VersionInfo",
    "WorkerInfo",
    "annotation_history",
    "count_jobs",
    "count_training_items",
    "get_channel",
    "get_dataset",
    "get_dataset_by_name",
    "get_job",
    "get_version",
    "job_epochs",
    "job_logs",
    "list_channels",
    "list_datasets",
    "list_events",
    "list_jobs",
    "list_models",
    "list_workers",
    "live_workers_for",
    "training_items_of",
]
