CREATE TABLE lh_schema_version (
	version INTEGER NOT NULL
);

CREATE TABLE lh_projects (
	id SERIAL NOT NULL, 
	name VARCHAR(500) NOT NULL, 
	owner VARCHAR(255) NOT NULL, 
	group_name VARCHAR(255), 
	artifact_location TEXT NOT NULL, 
	lifecycle_stage VARCHAR(32) NOT NULL, 
	creation_time BIGINT NOT NULL, 
	last_update_time BIGINT NOT NULL, 
	description TEXT NOT NULL, 
	PRIMARY KEY (id)
);

CREATE UNIQUE INDEX uq_lh_projects_private_name ON lh_projects (owner, name) WHERE group_name IS NULL;

CREATE INDEX ix_lh_projects_group ON lh_projects (group_name);

CREATE INDEX ix_lh_projects_owner ON lh_projects (owner);

CREATE UNIQUE INDEX uq_lh_projects_group_name ON lh_projects (group_name, name) WHERE group_name IS NOT NULL;

CREATE INDEX ix_lh_projects_name ON lh_projects (name);

CREATE TABLE lh_project_tags (
	project_id INTEGER NOT NULL, 
	key VARCHAR(250) NOT NULL, 
	value TEXT NOT NULL, 
	PRIMARY KEY (project_id, key), 
	FOREIGN KEY(project_id) REFERENCES lh_projects (id)
);

CREATE TABLE lh_project_shares (
	project_id INTEGER NOT NULL, 
	group_name VARCHAR(255) NOT NULL, 
	PRIMARY KEY (project_id, group_name), 
	FOREIGN KEY(project_id) REFERENCES lh_projects (id)
);

CREATE INDEX ix_lh_project_shares_group ON lh_project_shares (group_name);

CREATE TABLE lh_runs (
	run_id VARCHAR(32) NOT NULL, 
	project_id INTEGER NOT NULL, 
	name VARCHAR(500) NOT NULL, 
	user_id VARCHAR(255) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	start_time BIGINT NOT NULL, 
	end_time BIGINT, 
	heartbeat BIGINT, 
	lifecycle_stage VARCHAR(32) NOT NULL, 
	artifact_uri TEXT NOT NULL, 
	code TEXT NOT NULL, 
	environment TEXT NOT NULL, 
	failure TEXT NOT NULL, 
	status_reason TEXT NOT NULL, 
	PRIMARY KEY (run_id), 
	FOREIGN KEY(project_id) REFERENCES lh_projects (id)
);

CREATE INDEX ix_lh_runs_user ON lh_runs (user_id);

CREATE INDEX ix_lh_runs_project_start ON lh_runs (project_id, start_time);

CREATE INDEX ix_lh_runs_project_status ON lh_runs (project_id, status);

CREATE INDEX ix_lh_runs_status_heartbeat ON lh_runs (status, heartbeat);

CREATE TABLE lh_params (
	run_id VARCHAR(32) NOT NULL, 
	key VARCHAR(250) NOT NULL, 
	value TEXT NOT NULL, 
	PRIMARY KEY (run_id, key), 
	FOREIGN KEY(run_id) REFERENCES lh_runs (run_id)
);

CREATE INDEX ix_lh_params_key_value ON lh_params (key, value);

CREATE TABLE lh_tags (
	run_id VARCHAR(32) NOT NULL, 
	key VARCHAR(250) NOT NULL, 
	value TEXT NOT NULL, 
	PRIMARY KEY (run_id, key), 
	FOREIGN KEY(run_id) REFERENCES lh_runs (run_id)
);

CREATE INDEX ix_lh_tags_key ON lh_tags (key);

CREATE TABLE lh_metrics (
	run_id VARCHAR(32) NOT NULL, 
	key VARCHAR(250) NOT NULL, 
	step BIGINT NOT NULL, 
	timestamp BIGINT NOT NULL, 
	value FLOAT(53) NOT NULL, 
	is_nan BOOLEAN NOT NULL, 
	PRIMARY KEY (run_id, key, step, timestamp, value, is_nan), 
	FOREIGN KEY(run_id) REFERENCES lh_runs (run_id)
);

CREATE TABLE lh_latest_metrics (
	run_id VARCHAR(32) NOT NULL, 
	key VARCHAR(250) NOT NULL, 
	step BIGINT NOT NULL, 
	timestamp BIGINT NOT NULL, 
	value FLOAT(53) NOT NULL, 
	is_nan BOOLEAN NOT NULL, 
	PRIMARY KEY (run_id, key), 
	FOREIGN KEY(run_id) REFERENCES lh_runs (run_id)
);

CREATE INDEX ix_lh_latest_metrics_key_value ON lh_latest_metrics (key, value);

CREATE TABLE lh_logs (
	run_id VARCHAR(32) NOT NULL, 
	stream VARCHAR(8) NOT NULL, 
	seq BIGINT NOT NULL, 
	text TEXT NOT NULL, 
	timestamp BIGINT NOT NULL, 
	PRIMARY KEY (run_id, stream, seq), 
	FOREIGN KEY(run_id) REFERENCES lh_runs (run_id)
);

CREATE TABLE lh_artifacts (
	run_id VARCHAR(32) NOT NULL, 
	path VARCHAR(1024) NOT NULL, 
	sha256 VARCHAR(64) NOT NULL, 
	size BIGINT NOT NULL, 
	created BIGINT NOT NULL, 
	PRIMARY KEY (run_id, path), 
	FOREIGN KEY(run_id) REFERENCES lh_runs (run_id)
);

CREATE INDEX ix_lh_artifacts_sha ON lh_artifacts (sha256);

CREATE TABLE lh_jobs (
	job_id VARCHAR(32) NOT NULL, 
	run_id VARCHAR(32) NOT NULL, 
	project_id INTEGER NOT NULL, 
	user_id VARCHAR(255) NOT NULL, 
	group_name VARCHAR(255) NOT NULL, 
	executor VARCHAR(16) NOT NULL, 
	external_id VARCHAR(64), 
	state VARCHAR(16) NOT NULL, 
	reason TEXT NOT NULL, 
	resources TEXT NOT NULL, 
	config TEXT NOT NULL, 
	workdir TEXT NOT NULL, 
	node VARCHAR(255) NOT NULL, 
	exit_code INTEGER, 
	created BIGINT NOT NULL, 
	started BIGINT, 
	ended BIGINT, 
	resubmit_of VARCHAR(32), 
	PRIMARY KEY (job_id), 
	FOREIGN KEY(run_id) REFERENCES lh_runs (run_id), 
	FOREIGN KEY(project_id) REFERENCES lh_projects (id)
);

CREATE INDEX ix_lh_jobs_state ON lh_jobs (state);

CREATE INDEX ix_lh_jobs_user_created ON lh_jobs (user_id, created);

CREATE INDEX ix_lh_jobs_group_state ON lh_jobs (group_name, state);

CREATE TABLE lh_run_events (
	event_id SERIAL NOT NULL, 
	run_id VARCHAR(32) NOT NULL, 
	time BIGINT NOT NULL, 
	kind VARCHAR(32) NOT NULL, 
	message TEXT NOT NULL, 
	PRIMARY KEY (event_id), 
	FOREIGN KEY(run_id) REFERENCES lh_runs (run_id)
);

CREATE INDEX ix_lh_run_events_run ON lh_run_events (run_id, event_id);

CREATE TABLE lh_artifact_versions (
	id SERIAL NOT NULL, 
	project_id INTEGER NOT NULL, 
	name VARCHAR(250) NOT NULL, 
	version INTEGER NOT NULL, 
	run_id VARCHAR(32) NOT NULL, 
	path VARCHAR(1024) NOT NULL, 
	sha256 VARCHAR(64) NOT NULL, 
	size BIGINT NOT NULL, 
	created BIGINT NOT NULL, 
	description TEXT NOT NULL, 
	metadata TEXT NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_lh_artifact_versions_version UNIQUE (project_id, name, version), 
	FOREIGN KEY(project_id) REFERENCES lh_projects (id), 
	FOREIGN KEY(run_id) REFERENCES lh_runs (run_id)
);

CREATE INDEX ix_lh_artifact_versions_sha ON lh_artifact_versions (sha256);

CREATE INDEX ix_lh_artifact_versions_run ON lh_artifact_versions (run_id);

CREATE TABLE lh_job_tokens (
	token_hash VARCHAR(64) NOT NULL, 
	job_id VARCHAR(32) NOT NULL, 
	run_id VARCHAR(32) NOT NULL, 
	user_id VARCHAR(255) NOT NULL, 
	hub_token_id VARCHAR(64) NOT NULL, 
	expires BIGINT NOT NULL, 
	revoked BOOLEAN NOT NULL, 
	PRIMARY KEY (token_hash), 
	FOREIGN KEY(job_id) REFERENCES lh_jobs (job_id)
);

CREATE INDEX ix_lh_job_tokens_job ON lh_job_tokens (job_id);

CREATE TABLE lh_artifact_aliases (
	project_id INTEGER NOT NULL, 
	name VARCHAR(250) NOT NULL, 
	alias VARCHAR(128) NOT NULL, 
	version_id INTEGER NOT NULL, 
	PRIMARY KEY (project_id, name, alias), 
	FOREIGN KEY(project_id) REFERENCES lh_projects (id), 
	FOREIGN KEY(version_id) REFERENCES lh_artifact_versions (id)
);

CREATE INDEX ix_lh_artifact_aliases_version ON lh_artifact_aliases (version_id);

CREATE TABLE lh_artifact_uses (
	run_id VARCHAR(32) NOT NULL, 
	version_id INTEGER NOT NULL, 
	time BIGINT NOT NULL, 
	PRIMARY KEY (run_id, version_id), 
	FOREIGN KEY(run_id) REFERENCES lh_runs (run_id), 
	FOREIGN KEY(version_id) REFERENCES lh_artifact_versions (id)
);

CREATE INDEX ix_lh_artifact_uses_version ON lh_artifact_uses (version_id);

ALTER TABLE lh_projects DROP CONSTRAINT IF EXISTS uq_lh_projects_name;
