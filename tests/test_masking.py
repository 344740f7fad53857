"""One secret masking for every log line and error text (streams' errors, the agent's MQTT status)."""

from __future__ import annotations

from common.masking import mask_secrets


def test_mask_secrets_masks_user_only_info_and_secret_query_values_in_free_text() -> None:
    text = "cannot open rtsp://token@cam/live?user=bob&pwd=s3cret&fps=5; see http://h/a?api_key=k1"
    assert (
        mask_secrets(text)
        == "cannot open rtsp://***@cam/live?user=bob&pwd=***&fps=5; see http://h/a?api_key=***"
    )
