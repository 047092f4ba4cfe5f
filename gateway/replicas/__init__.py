"""Replicas on one database: a heartbeat row each, so that a replica can tell it is not alone
(``telegate serve`` refuses a second replica without Redis: docs/redis.md, "Invalidations
across replicas")."""

from .store import Replica, ReplicaStore

__all__ = ["Replica", "ReplicaStore"]
