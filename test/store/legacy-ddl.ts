/**
 * The AMIE tables as the reference software's SQL script creates them, copied literally so
 * the toolkit is tested against what sites really have, not against its own DDL. Only
 * `WITH OIDS` on data_tbl is left out: PostgreSQL 12 removed it.
 */
export const LEGACY_AMIE_DDL = `
CREATE TABLE state_des 
(
    state_id   numeric(3,0) NOT NULL,
    state_name varchar(32)  NOT NULL,
    CONSTRAINT state_des_pk
      PRIMARY KEY (state_id),
    CONSTRAINT state_des_name_uk
      UNIQUE (state_name)
) ;

INSERT INTO state_des ( state_id, state_name ) VALUES ( 1,'completed' ) ;
INSERT INTO state_des ( state_id, state_name ) VALUES ( 2,'in-progress' ) ;
INSERT INTO state_des ( state_id, state_name ) VALUES ( 3,'failed' ) ;
INSERT INTO state_des ( state_id, state_name ) VALUES ( 4,'rejected' ) ;
INSERT INTO state_des ( state_id, state_name ) VALUES ( 5,'on-hold' ) ;
INSERT INTO state_des ( state_id, state_name ) VALUES ( 6,'x-pending' ) ;
INSERT INTO state_des ( state_id, state_name ) VALUES ( 7,'killed' ) ;

CREATE TABLE type_des 
(
    type_id   numeric(3,0) NOT NULL,
    type_name varchar(48)  NOT NULL,
    CONSTRAINT type_des_pk
      PRIMARY KEY (type_id),
    CONSTRAINT type_des_name_uk
      UNIQUE (type_name)
) ;

INSERT INTO type_des ( type_id, type_name ) VALUES ( 1,'data_account_create' ) ;
INSERT INTO type_des ( type_id, type_name ) VALUES ( 2,'data_project_create' ) ;
INSERT INTO type_des ( type_id, type_name ) VALUES ( 3,'inform_transaction_complete' ) ;
INSERT INTO type_des ( type_id, type_name ) VALUES ( 4,'notify_account_inactivate' ) ;
INSERT INTO type_des ( type_id, type_name ) VALUES ( 5,'notify_account_reactivate' ) ;
INSERT INTO type_des ( type_id, type_name ) VALUES ( 6,'notify_account_create' ) ;
INSERT INTO type_des ( type_id, type_name ) VALUES ( 7,'notify_project_create' ) ;
INSERT INTO type_des ( type_id, type_name ) VALUES ( 8,'notify_project_inactivate' ) ;
INSERT INTO type_des ( type_id, type_name ) VALUES ( 9,'notify_project_modify' ) ;
INSERT INTO type_des ( type_id, type_name ) VALUES ( 10,'notify_project_reactivate' ) ;
INSERT INTO type_des ( type_id, type_name ) VALUES ( 11,'notify_project_resources' ) ;
INSERT INTO type_des ( type_id, type_name ) VALUES ( 12,'notify_project_usage' ) ;
INSERT INTO type_des ( type_id, type_name ) VALUES ( 13,'notify_user_modify' ) ;
INSERT INTO type_des ( type_id, type_name ) VALUES ( 14,'notify_user_reactivate' ) ;
INSERT INTO type_des ( type_id, type_name ) VALUES ( 15,'notify_user_suspend' ) ;
INSERT INTO type_des ( type_id, type_name ) VALUES ( 16,'request_account_create' ) ;
INSERT INTO type_des ( type_id, type_name ) VALUES ( 17,'request_account_inactivate' ) ;
INSERT INTO type_des ( type_id, type_name ) VALUES ( 18,'request_account_reactivate' ) ;
INSERT INTO type_des ( type_id, type_name ) VALUES ( 19,'request_project_create' ) ;
INSERT INTO type_des ( type_id, type_name ) VALUES ( 20,'request_project_inactivate' ) ;
INSERT INTO type_des ( type_id, type_name ) VALUES ( 21,'request_project_modify' ) ;
INSERT INTO type_des ( type_id, type_name ) VALUES ( 22,'request_project_reactivate' ) ;
INSERT INTO type_des ( type_id, type_name ) VALUES ( 23,'request_project_resources' ) ;
INSERT INTO type_des ( type_id, type_name ) VALUES ( 24,'request_user_modify' ) ;
INSERT INTO type_des ( type_id, type_name ) VALUES ( 25,'request_user_reactivate' ) ;
INSERT INTO type_des ( type_id, type_name ) VALUES ( 26,'request_user_suspend' ) ;
INSERT INTO type_des ( type_id, type_name ) VALUES ( 27,'request_user_create' ) ;
INSERT INTO type_des ( type_id, type_name ) VALUES ( 28,'notify_user_create' ) ;
INSERT INTO type_des ( type_id, type_name ) VALUES ( 29,'notify_person_ids' ) ;
INSERT INTO type_des ( type_id, type_name ) VALUES ( 30,'notify_person_duplicate' ) ;
INSERT INTO type_des ( type_id, type_name ) VALUES ( 31,'request_person_merge' ) ;

CREATE TABLE transaction_tbl 
(
    trans_rec_id          serial,
    originating_site_name varchar(16)   NOT NULL,
    transaction_id        numeric(38,0) NOT NULL,
    local_site_name       varchar(16)   NOT NULL,
    remote_site_name      varchar(16)   NOT NULL,
    state_id              numeric(3,0)  NOT NULL,
    ts                    timestamp     DEFAULT CURRENT_TIMESTAMP NOT NULL,
    CONSTRAINT transaction_pk
      PRIMARY KEY  (trans_rec_id),
    CONSTRAINT transaction_uk
      UNIQUE  (originating_site_name,transaction_id,local_site_name,remote_site_name),
    CONSTRAINT transaction_state_fk
      FOREIGN KEY (state_id)
      REFERENCES state_des (state_id)
) ;

CREATE TABLE packet_tbl 
(
    packet_rec_id serial,
    trans_rec_id  int           NOT NULL,
    packet_id     numeric(38,0) NOT NULL,
    type_id       numeric(3,0)  NOT NULL,
    version       varchar(4)    NOT NULL,
    state_id      numeric(3,0)  NOT NULL,
    outgoing_flag numeric(1,0)  NOT NULL,
    ts            timestamp     DEFAULT CURRENT_TIMESTAMP NOT NULL,
    CONSTRAINT packet_pk
      PRIMARY KEY  (packet_rec_id),
    CONSTRAINT packet_uk
      UNIQUE  (trans_rec_id,packet_id,outgoing_flag),
    CONSTRAINT packet_type_fk
      FOREIGN KEY (type_id)
      REFERENCES type_des (type_id),
    CONSTRAINT packet_state_fk
      FOREIGN KEY (state_id)
      REFERENCES state_des (state_id),
    CONSTRAINT packet_trans_fk
      FOREIGN KEY (trans_rec_id)
      REFERENCES transaction_tbl (trans_rec_id)
) ;

CREATE TABLE data_tbl 
(
    packet_rec_id  int           NOT NULL,
    tag            varchar(32)   NOT NULL,
    subtag         varchar(128)  NULL,
    seq            int           NOT NULL,
    value          text          NULL,
    CONSTRAINT data_uk
      UNIQUE  (packet_rec_id,tag,subtag,seq),
    CONSTRAINT data_packet_fk
      FOREIGN KEY (packet_rec_id)
      REFERENCES packet_tbl (packet_rec_id)
);

CREATE INDEX data_prid_idx
  ON data_tbl
  USING btree
  (packet_rec_id);
  
CREATE INDEX data_prid_tag_idx
  ON data_tbl
  USING btree
  (packet_rec_id, tag);

CREATE TABLE expected_reply_tbl 
(
    packet_rec_id int           NOT NULL,
    type_id       numeric(3,0)  NOT NULL,
    timeout       int           NULL,
    CONSTRAINT expected_reply_pk
      PRIMARY KEY (packet_rec_id,type_id),
    CONSTRAINT expected_reply_packet_fk
      FOREIGN KEY (packet_rec_id)
      REFERENCES packet_tbl (packet_rec_id),
    CONSTRAINT expected_reply_type_fk
      FOREIGN KEY (type_id)
      REFERENCES type_des (type_id)
) ;

CREATE TABLE transaction_depends_tbl 
(
    trans_rec_id            int NOT NULL,
    depends_on_trans_rec_id int NOT NULL,
    CONSTRAINT transaction_depends_uk
      UNIQUE  (trans_rec_id,depends_on_trans_rec_id),
    CONSTRAINT transaction_depends_fk1
      FOREIGN KEY (trans_rec_id)
      REFERENCES transaction_tbl (trans_rec_id),
    CONSTRAINT transaction_depends_fk2
      FOREIGN KEY (depends_on_trans_rec_id)
      REFERENCES transaction_tbl (trans_rec_id)
) ;
`;
