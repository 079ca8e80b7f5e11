"""One entry point for crash recovery, shared by the start-up command and the periodic task."""

from __future__ import annotations


def recover_stale(stale_after: float | None = None) -> dict:
    from backend.exports.recovery import recover_stale_exports
    from backend.imaging.recovery import fail_stale_ingests, remove_orphan_staging

    scans = fail_stale_ingests(stale_after)
    staging = remove_orphan_staging(stale_after)
    exports, export_staging = recover_stale_exports(stale_after)
    return {"failed_scans": scans, "removed_upload_staging": [str(p) for p in staging],
            "failed_exports": exports, "removed_export_staging": [str(p) for p in export_staging]}
