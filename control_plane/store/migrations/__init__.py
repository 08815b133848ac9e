"""Schema migrations: plain SQL files `NNNN_name.sql`, applied in order by `control_plane.store.migrate`."""
