"""The medialens code location: assets, their checks, the analysis job, sensors and resources."""

from dagster import Definitions

from media_assets.assets.audio import audio_track
from media_assets.assets.checks import MEDIA_CHECKS
from media_assets.assets.faces import faces
from media_assets.assets.frames import keyframes
from media_assets.assets.ingest import media_file
from media_assets.assets.jobs import analyse_media_job
from media_assets.assets.ocr import ocr_text
from media_assets.assets.person_dossiers import person_dossiers
from media_assets.assets.poses import poses
from media_assets.assets.safety import safety
from media_assets.assets.search_index import search_index
from media_assets.assets.summary import summary
from media_assets.assets.tags import tags
from media_assets.assets.transcript import transcript
from media_assets.plumbing.config import Paths
from resources import build_resources
from sensors.failed_batch import failed_batch_sensor
from sensors.stale_model import stale_model_sensor
from sensors.upload import media_upload_sensor

defs = Definitions(
    assets=[
        media_file,
        keyframes,
        audio_track,
        ocr_text,
        poses,
        faces,
        safety,
        tags,
        transcript,
        summary,
        search_index,
        person_dossiers,
    ],
    asset_checks=MEDIA_CHECKS,
    jobs=[analyse_media_job],
    sensors=[media_upload_sensor, failed_batch_sensor, stale_model_sensor],
    resources=build_resources(Paths.from_env()),
)
