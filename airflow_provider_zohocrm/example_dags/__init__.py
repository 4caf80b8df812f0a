"""The example DAG, shipped in the wheel so that a pip user has it: copy :data:`EXAMPLE_DAG` into a DAGs folder.

    cp "$(python -c 'from airflow_provider_zohocrm.example_dags import EXAMPLE_DAG; print(EXAMPLE_DAG)')" \
        "$AIRFLOW_HOME/dags/"

The repository's ``dags/zoho_unblock_bounced_emails.py`` is a symbolic link to the same file.
"""

from __future__ import annotations

from pathlib import Path

#: The example DAG file ``zoho_unblock_bounced_emails.py`` inside the installed package.
EXAMPLE_DAG = Path(__file__).with_name("zoho_unblock_bounced_emails.py")

__all__ = ["EXAMPLE_DAG"]
