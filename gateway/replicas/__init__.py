"""Replicas on one database: a heartbeat row each, so that a replica can tell it is not alone
(``telegate serve`` refuses a second replica without Redis, docs/redis-invalidations.md)."""

from .store import Replica, ReplicaStore

__all__ = ["Replica", "ReplicaStore"]
