"""Site monitoring: gas detection and alarm management, detector health, false-alarm analysis,
geofences, wristbands and contractors (``docs/monitoring.md``)."""
