CREATE TABLE usage_sessions (
	id SERIAL NOT NULL, 
	object_id VARCHAR(128) NOT NULL, 
	group_name VARCHAR(255) NOT NULL, 
	user_name VARCHAR(255) NOT NULL, 
	server_name VARCHAR(255) NOT NULL, 
	node VARCHAR(255) NOT NULL, 
	image VARCHAR(512) NOT NULL, 
	gpus INTEGER NOT NULL, 
	cpus FLOAT, 
	mem_bytes BIGINT, 
	start_time FLOAT NOT NULL, 
	start_source VARCHAR(16) NOT NULL, 
	end_time FLOAT, 
	end_source VARCHAR(16) NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_usage_sessions_object ON usage_sessions (object_id, end_time);

CREATE INDEX ix_usage_sessions_window ON usage_sessions (start_time, end_time);

CREATE TABLE usage_cursors (
	name VARCHAR(64) NOT NULL, 
	value FLOAT NOT NULL, 
	PRIMARY KEY (name)
);
