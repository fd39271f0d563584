"""Small algorithm projects for the CLI tests, generated into tmp_path."""
