<?php
/**
 * Plugin Name:       Writer Images Bridge
 * Description:       Tells Writer Images when posts change (signed webhooks) and lets it find its posts by publication key.
 * Version:           1.1.0
 * Requires at least: 6.0
 * Requires PHP:      7.2
 * Author:            Writer Images
 * License:           GPL-2.0-or-later
 * Text Domain:       writer-images-bridge
 *
 * Written for PHP 7.2+ (no arrow functions, typed properties or match) so that it installs on any WordPress 6.x.
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

final class Writer_Images_Bridge {
	const VERSION      = '1.1.0';
	const META_KEY     = '_writer_images_publication_key';
	const SETTINGS     = 'writer_images_bridge_settings';
	const QUEUE        = 'writer_images_bridge_queue';
	const PAUSE        = 'writer_images_bridge_pause';
	const RETRY_HOOK   = 'writer_images_bridge_retry';
	const TIMEOUT_S    = 2;
	const MAX_ATTEMPTS = 50;
	const MAX_QUEUED   = 1000;
	// Queued webhooks an editor's request sends besides its own changes: a backlog must not slow the editor.
	const QUEUED_PER_REQUEST = 5;
	// Webhooks one WP-Cron run sends; the next run comes a minute later while more are waiting.
	const SENT_PER_CRON_RUN = 100;
	// After a refusal that a person has to fix (401: wrong secret or site key, or this server's clock), editor
	// requests send nothing for this long; WP-Cron keeps asking, one webhook per run.
	const REFUSED_PAUSE_S = 300;
	// Answers that no retry can change: the webhook is dropped at once.
	const PERMANENT_REFUSALS = array( 400, 413, 422 );
	// The statuses the receiver understands (its event contract); `deleted` is ours, after a permanent delete.
	const REPORTED_STATUSES = array( 'publish', 'future', 'draft', 'pending', 'private', 'trash', 'deleted' );

	/** @var array<string, array> Changes seen in this request, keyed "post_id:status"; sent at shutdown. */
	private static $pending = array();

	/** @var array<int, string> Publication keys read before deletion (WordPress deletes meta before `deleted_post`). */
	private static $deleting_keys = array();

	public static function boot() {
		add_action( 'init', array( __CLASS__, 'register_meta' ) );
		add_action( 'rest_api_init', array( __CLASS__, 'register_routes' ) );

		add_action( 'transition_post_status', array( __CLASS__, 'on_transition_post_status' ), 10, 3 );
		add_action( 'wp_after_insert_post', array( __CLASS__, 'on_after_insert_post' ), 10, 2 );
		add_action( 'trashed_post', array( __CLASS__, 'on_trashed_post' ), 10, 1 );
		add_action( 'untrashed_post', array( __CLASS__, 'on_untrashed_post' ), 10, 1 );
		add_action( 'before_delete_post', array( __CLASS__, 'on_before_delete_post' ), 10, 2 );
		add_action( 'deleted_post', array( __CLASS__, 'on_deleted_post' ), 10, 2 );
		// Late, after WordPress flushed its output buffers (priority 1): the response is complete by then.
		add_action( 'shutdown', array( __CLASS__, 'flush' ), 100 );
		add_action( self::RETRY_HOOK, array( __CLASS__, 'retry_queued' ) );

		add_action( 'admin_menu', array( __CLASS__, 'add_settings_page' ) );
		add_action( 'admin_init', array( __CLASS__, 'register_settings' ) );
	}

	public static function deactivate() {
		wp_clear_scheduled_hook( self::RETRY_HOOK );
	}

	/* ------------------------------------------------------------------ configuration */

	private static function setting( $constant, $key ) {
		if ( defined( $constant ) ) {
			return (string) constant( $constant );
		}
		$settings = get_option( self::SETTINGS, array() );
		return ( is_array( $settings ) && isset( $settings[ $key ] ) ) ? (string) $settings[ $key ] : '';
	}

	public static function webhook_url() {
		return self::setting( 'WRITER_IMAGES_WEBHOOK_URL', 'webhook_url' );
	}

	public static function secret() {
		return self::setting( 'WRITER_IMAGES_WEBHOOK_SECRET', 'secret' );
	}

	public static function site_key() {
		$key = self::setting( 'WRITER_IMAGES_SITE_KEY', 'site_key' );
		return '' !== $key ? $key : home_url();
	}

	private static function is_configured() {
		return '' !== self::webhook_url() && '' !== self::secret();
	}

	/** Changes with the URL, the site key or the secret (keyed by the secret: it reveals nothing of it). */
	private static function configuration_fingerprint() {
		return hash_hmac( 'sha256', self::webhook_url() . "\n" . self::site_key(), self::secret() );
	}

	private static function post_types() {
		return (array) apply_filters( 'writer_images_bridge_post_types', array( 'post' ) );
	}

	/* ------------------------------------------------------------------ meta and REST */

	public static function register_meta() {
		foreach ( self::post_types() as $post_type ) {
			register_post_meta(
				$post_type,
				self::META_KEY,
				array(
					'type'              => 'string',
					'single'            => true,
					'sanitize_callback' => 'sanitize_text_field',
					// "edit" context only: anonymous readers of a public post never see the key.
					'show_in_rest'      => array(
						'schema' => array(
							'type'    => 'string',
							'context' => array( 'edit' ),
						),
					),
					// The key starts with "_" (protected meta, hidden from the custom fields box), which the REST
					// API refuses to write unless an auth callback allows it. Editing the post is checked first.
					'auth_callback'     => array( __CLASS__, 'may_write_publication_key' ),
				)
			);
		}
	}

	/** auth_callback of the meta: may this user write the key (after WordPress checked edit_post on the post)? */
	public static function may_write_publication_key( $allowed, $meta_key, $post_id, $user_id ) {
		return user_can( $user_id, 'edit_posts' );
	}

	public static function rest_permission() {
		return current_user_can( 'edit_posts' );
	}

	public static function register_routes() {
		register_rest_route(
			'writer-images/v1',
			'/posts',
			array(
				'methods'             => 'GET',
				'callback'            => array( __CLASS__, 'rest_find_posts' ),
				'permission_callback' => array( __CLASS__, 'rest_permission' ),
				'args'                => array(
					'publication_key' => array(
						'type'      => 'string',
						'required'  => true,
						'minLength' => 1,
					),
				),
			)
		);
		register_rest_route(
			'writer-images/v1',
			'/health',
			array(
				'methods'             => 'GET',
				'callback'            => array( __CLASS__, 'rest_health' ),
				'permission_callback' => array( __CLASS__, 'rest_permission' ),
			)
		);
	}

	/** Posts carrying a publication key, in every status including trash (the publisher restores those). */
	public static function rest_find_posts( WP_REST_Request $request ) {
		$statuses = array_values( array_diff( get_post_stati(), array( 'auto-draft', 'inherit' ) ) );
		$ids      = get_posts(
			array(
				'post_type'      => self::post_types(),
				'post_status'    => $statuses,
				'meta_key'       => self::META_KEY, // phpcs:ignore WordPress.DB.SlowDBQuery
				'meta_value'     => (string) $request['publication_key'], // phpcs:ignore WordPress.DB.SlowDBQuery
				'fields'         => 'ids',
				'posts_per_page' => 100,
				'orderby'        => 'ID',
				'order'          => 'ASC',
				'no_found_rows'  => true,
			)
		);
		$found = array();
		foreach ( $ids as $id ) {
			$post    = get_post( $id );
			$found[] = array(
				'id'           => (int) $post->ID,
				'status'       => $post->post_status,
				'link'         => get_permalink( $post ),
				'modified_gmt' => self::rfc3339( $post->post_modified_gmt ),
			);
		}
		return rest_ensure_response( $found );
	}

	public static function rest_health() {
		$pause = self::pause();
		return rest_ensure_response(
			array(
				'plugin'             => 'writer-images-bridge',
				'version'            => self::VERSION,
				'site_key'           => self::site_key(),
				'webhook_configured' => self::is_configured(),
				'queued_webhooks'    => count( self::queue() ),
				'paused_until'       => $pause ? gmdate( 'Y-m-d\TH:i:s', $pause['until'] ) : null,
				'refused_with'       => $pause ? $pause['code'] : null,
			)
		);
	}

	/* ------------------------------------------------------------------ capturing changes */

	public static function on_transition_post_status( $new_status, $old_status, $post ) {
		self::capture( $post, $new_status, 'transition_post_status' );
	}

	public static function on_after_insert_post( $post_id, $post ) {
		self::capture( $post, $post instanceof WP_Post ? $post->post_status : '', 'wp_after_insert_post' );
	}

	public static function on_trashed_post( $post_id ) {
		self::capture( get_post( $post_id ), 'trash', 'trashed_post' );
	}

	public static function on_untrashed_post( $post_id ) {
		$post = get_post( $post_id );
		self::capture( $post, $post instanceof WP_Post ? $post->post_status : '', 'untrashed_post' );
	}

	public static function on_before_delete_post( $post_id, $post = null ) {
		self::$deleting_keys[ (int) $post_id ] = (string) get_post_meta( $post_id, self::META_KEY, true );
	}

	public static function on_deleted_post( $post_id, $post = null ) {
		if ( $post instanceof WP_Post && 'auto-draft' !== $post->post_status ) {
			self::capture( $post, 'deleted', 'deleted_post' );
		}
	}

	private static function capture( $post, $status, $event ) {
		try {
			if ( ! $post instanceof WP_Post || ! self::is_configured() ) {
				return;
			}
			if ( ! in_array( $post->post_type, self::post_types(), true )
				|| wp_is_post_revision( $post ) || wp_is_post_autosave( $post )
				|| ! in_array( $status, self::REPORTED_STATUSES, true ) ) {
				return; // auto-drafts, revisions ('inherit') and custom statuses Writer Images has no meaning for
			}
			$key = $post->ID . ':' . $status;
			// Hooks fire several times per change: keep one event per post and status, the last one, at the end.
			unset( self::$pending[ $key ] );
			self::$pending[ $key ] = array(
				'post_id'  => (int) $post->ID,
				'status'   => $status,
				'event'    => $event,
				'snapshot' => self::describe( $post, $status ),
			);
		} catch ( \Throwable $error ) {
			error_log( 'writer-images-bridge: could not record a change of post ' . ( $post instanceof WP_Post ? $post->ID : '?' ) . ': ' . $error->getMessage() );
		}
	}

	private static function describe( WP_Post $post, $status ) {
		$deleted = 'deleted' === $status;
		if ( $deleted ) {
			$key = isset( self::$deleting_keys[ $post->ID ] ) ? self::$deleting_keys[ $post->ID ] : '';
		} else {
			$key = (string) get_post_meta( $post->ID, self::META_KEY, true );
		}
		return array(
			'title'           => $post->post_title,
			'link'            => get_permalink( $post ),
			// A deleted post has no modification date of its own: the deletion time orders it after its last edit.
			'modified_gmt'    => $deleted ? gmdate( 'Y-m-d\TH:i:s' ) : self::rfc3339( $post->post_modified_gmt ),
			'publication_key' => '' !== $key ? $key : null,
		);
	}

	private static function rfc3339( $mysql_gmt ) {
		return ( empty( $mysql_gmt ) || '0000-00-00 00:00:00' === $mysql_gmt ) ? null : mysql_to_rfc3339( $mysql_gmt );
	}

	/* ------------------------------------------------------------------ delivery */

	/** Runs at shutdown: sends this request's changes (and a few queued ones); never throws. */
	public static function flush() {
		if ( empty( self::$pending ) ) {
			return;
		}
		try {
			$deliveries = array();
			foreach ( self::$pending as $change ) {
				$body = self::payload( $change );
				if ( is_string( $body ) ) {
					$deliveries[] = array(
						'id'       => wp_generate_uuid4(),
						'body'     => $body,
						'attempts' => 0,
					);
				}
			}
			self::$pending = array();
			// Under PHP-FPM/LiteSpeed the visitor gets the response now and does not wait for the webhook.
			if ( function_exists( 'fastcgi_finish_request' ) ) {
				fastcgi_finish_request();
			} elseif ( function_exists( 'litespeed_finish_request' ) ) {
				litespeed_finish_request();
			}
			// Paused after a refusal: queue only, WP-Cron asks again. Else this request's own changes and a
			// few queued ones: a backlog drains through WP-Cron, not through the editor's saves.
			$budget = self::pause() ? 0 : count( $deliveries ) + self::QUEUED_PER_REQUEST;
			self::deliver( $deliveries, $budget );
		} catch ( \Throwable $error ) {
			error_log( 'writer-images-bridge: webhook flush failed: ' . $error->getMessage() );
		}
	}

	/** The WP-Cron event: sends the queue (oldest first), also while paused: it is how a fix is noticed. */
	public static function retry_queued() {
		try {
			self::deliver( array(), self::SENT_PER_CRON_RUN );
		} catch ( \Throwable $error ) {
			error_log( 'writer-images-bridge: webhook retry failed: ' . $error->getMessage() );
		}
	}

	private static function payload( array $change ) {
		$data = $change['snapshot'];
		// Other hooks may have changed the post after this one fired (REST writes meta after inserting the post).
		if ( 'deleted' !== $change['status'] ) {
			$post = get_post( $change['post_id'] );
			if ( $post instanceof WP_Post ) {
				$data = self::describe( $post, $change['status'] );
			}
		}
		return wp_json_encode(
			array(
				'site_key'        => self::site_key(),
				'post_id'         => $change['post_id'],
				'status'          => $change['status'],
				'modified_gmt'    => $data['modified_gmt'],
				'link'            => $data['link'],
				'title'           => $data['title'],
				'publication_key' => $data['publication_key'],
				'event'           => $change['event'],
			),
			JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE
		);
	}

	/**
	 * Sends the queue, then `$deliveries`, oldest first (two changes of a post within one second carry the
	 * same modified_gmt: the receiver keeps the one that arrives last), at most `$budget` of them, and stops
	 * at the first answer that is not a 2xx: a receiver that is down or refuses us is asked once per request,
	 * so it costs a request at most one timeout. What was not sent stays queued for WP-Cron or the next
	 * request. Concurrent requests may both send a queued delivery: the receiver dedupes by webhook-id,
	 * and its reconciler covers anything lost.
	 */
	private static function deliver( array $deliveries, $budget ) {
		if ( ! self::is_configured() ) {
			return;
		}
		$queued       = self::queue();
		$left         = array();
		$sent         = 0;
		$delivered    = false;
		$failed       = false;
		$refused_with = 0;
		foreach ( array_merge( $queued, $deliveries ) as $delivery ) {
			if ( $failed || $sent >= $budget ) {
				$left[] = $delivery;
				continue;
			}
			++$sent;
			list( $outcome, $code ) = self::send( $delivery );
			if ( 'delivered' === $outcome ) {
				$delivered = true;
				continue;
			}
			$failed = true;
			if ( 'refused_for_good' === $outcome ) {
				error_log( 'writer-images-bridge: dropping webhook ' . $delivery['id'] . ': the receiver refused it with HTTP ' . $code . ', which no retry changes' );
				continue;
			}
			if ( 'refused' === $outcome ) {
				$refused_with = $code;
			}
			++$delivery['attempts'];
			if ( $delivery['attempts'] >= self::MAX_ATTEMPTS ) {
				error_log( 'writer-images-bridge: dropping webhook ' . $delivery['id'] . ' after ' . $delivery['attempts'] . ' attempts' );
				continue;
			}
			$left[] = $delivery;
		}
		if ( $refused_with ) {
			$pause = array(
				'until'         => time() + self::REFUSED_PAUSE_S,
				'code'          => $refused_with,
				'configuration' => self::configuration_fingerprint(),
			);
			update_option( self::PAUSE, $pause, false );
		} elseif ( $delivered && false !== get_option( self::PAUSE, false ) ) {
			delete_option( self::PAUSE );
		}
		if ( 0 === $sent && ! $deliveries ) {
			return; // nothing sent, nothing new: the queue is as it was
		}
		// Another request may have queued webhooks while this one was sending: keep them.
		$known = array();
		foreach ( $queued as $delivery ) {
			$known[ $delivery['id'] ] = true;
		}
		foreach ( self::stored_queue() as $delivery ) {
			if ( ! isset( $known[ $delivery['id'] ] ) ) {
				$left[] = $delivery;
			}
		}
		if ( count( $left ) > self::MAX_QUEUED ) {
			error_log( 'writer-images-bridge: webhook queue full, dropping the ' . ( count( $left ) - self::MAX_QUEUED ) . ' oldest' );
			$left = array_slice( $left, -self::MAX_QUEUED );
		}
		if ( $left ) {
			update_option( self::QUEUE, $left, false );
			if ( ! wp_next_scheduled( self::RETRY_HOOK ) ) {
				// Held back by the budget alone, the rest can go in a minute; after a failure, in five.
				$delay = ( $failed || 0 === $budget ) ? 5 * MINUTE_IN_SECONDS : MINUTE_IN_SECONDS;
				wp_schedule_single_event( time() + $delay, self::RETRY_HOOK );
			}
		} elseif ( $queued ) {
			delete_option( self::QUEUE );
		}
	}

	private static function queue() {
		$queued = get_option( self::QUEUE, array() );
		return is_array( $queued ) ? array_values( array_filter( $queued, array( __CLASS__, 'is_delivery' ) ) ) : array();
	}

	/** The queue as the database has it now: get_option answers from this request's cache. */
	private static function stored_queue() {
		wp_cache_delete( self::QUEUE, 'options' );
		$missing = wp_cache_get( 'notoptions', 'options' );
		if ( is_array( $missing ) && isset( $missing[ self::QUEUE ] ) ) {
			unset( $missing[ self::QUEUE ] );
			wp_cache_set( 'notoptions', $missing, 'options' );
		}
		return self::queue();
	}

	private static function is_delivery( $item ) {
		return is_array( $item ) && isset( $item['id'], $item['body'], $item['attempts'] );
	}

	/**
	 * The pause after a refusal as array( 'until' => unix time, 'code' => HTTP status ), or null. New settings
	 * (in wp-config.php or on the settings page) may be the fix: they end it.
	 */
	private static function pause() {
		$pause = get_option( self::PAUSE, null );
		if ( ! is_array( $pause ) || ! isset( $pause['until'], $pause['code'], $pause['configuration'] )
			|| (int) $pause['until'] <= time()
			|| ! hash_equals( (string) $pause['configuration'], self::configuration_fingerprint() ) ) {
			return null;
		}
		return array(
			'until' => (int) $pause['until'],
			'code'  => (int) $pause['code'],
		);
	}

	/**
	 * One signed POST (Standard Webhooks style). Returns array( outcome, HTTP status or 0 ), outcome being
	 * "delivered" (2xx), "down" (no answer, 408, 429, 5xx: try again later), "refused_for_good" (400, 413,
	 * 422: this body will never be accepted) or "refused" (anything else, e.g. 401: a setting to fix).
	 */
	private static function send( array $delivery ) {
		$timestamp = (string) time();
		$signature = base64_encode( hash_hmac( 'sha256', $delivery['id'] . '.' . $timestamp . '.' . $delivery['body'], self::secret(), true ) );
		// wp_remote_post, not wp_safe_remote_post: the receiver may live on loopback or a non-standard port.
		// Blocking with a short timeout: we must know whether it arrived to queue it for a retry.
		$response = wp_remote_post(
			self::webhook_url(),
			array(
				'timeout'     => self::TIMEOUT_S,
				'redirection' => 0,
				'blocking'    => true,
				'user-agent'  => 'WriterImagesBridge/' . self::VERSION . '; ' . home_url(),
				'headers'     => array(
					'Content-Type'      => 'application/json',
					'webhook-id'        => $delivery['id'],
					'webhook-timestamp' => $timestamp,
					'webhook-signature' => 'v1,' . $signature,
				),
				'body'        => $delivery['body'],
			)
		);
		if ( is_wp_error( $response ) ) {
			error_log( 'writer-images-bridge: webhook ' . $delivery['id'] . ' not delivered: ' . $response->get_error_message() );
			return array( 'down', 0 );
		}
		$code = (int) wp_remote_retrieve_response_code( $response );
		if ( $code >= 200 && $code < 300 ) {
			return array( 'delivered', $code );
		}
		error_log( 'writer-images-bridge: webhook ' . $delivery['id'] . ' answered HTTP ' . $code );
		if ( 408 === $code || 429 === $code || $code >= 500 ) {
			return array( 'down', $code );
		}
		return array( in_array( $code, self::PERMANENT_REFUSALS, true ) ? 'refused_for_good' : 'refused', $code );
	}

	/* ------------------------------------------------------------------ settings page */

	public static function add_settings_page() {
		add_options_page( 'Writer Images', 'Writer Images', 'manage_options', 'writer-images-bridge', array( __CLASS__, 'render_settings_page' ) );
	}

	public static function register_settings() {
		register_setting(
			'writer_images_bridge',
			self::SETTINGS,
			array(
				'type'              => 'array',
				'sanitize_callback' => array( __CLASS__, 'sanitize_settings' ),
				'default'           => array(),
			)
		);
	}

	public static function sanitize_settings( $input ) {
		$input = is_array( $input ) ? $input : array();
		return array(
			'webhook_url' => esc_url_raw( isset( $input['webhook_url'] ) ? trim( $input['webhook_url'] ) : '', array( 'http', 'https' ) ),
			'secret'      => isset( $input['secret'] ) ? trim( (string) $input['secret'] ) : '',
			'site_key'    => sanitize_text_field( isset( $input['site_key'] ) ? $input['site_key'] : '' ),
		);
	}

	public static function render_settings_page() {
		if ( ! current_user_can( 'manage_options' ) ) {
			return;
		}
		$fields = array(
			'webhook_url' => array( 'Webhook URL', 'WRITER_IMAGES_WEBHOOK_URL', 'url' ),
			'secret'      => array( 'Webhook secret', 'WRITER_IMAGES_WEBHOOK_SECRET', 'password' ),
			'site_key'    => array( 'Site key', 'WRITER_IMAGES_SITE_KEY', 'text' ),
		);
		$settings = get_option( self::SETTINGS, array() );
		echo '<div class="wrap"><h1>Writer Images</h1><form method="post" action="options.php">';
		settings_fields( 'writer_images_bridge' );
		echo '<table class="form-table" role="presentation">';
		foreach ( $fields as $key => $field ) {
			list( $label, $constant, $type ) = $field;
			$value = is_array( $settings ) && isset( $settings[ $key ] ) ? $settings[ $key ] : '';
			echo '<tr><th scope="row"><label for="wib-' . esc_attr( $key ) . '">' . esc_html( $label ) . '</label></th><td>';
			if ( defined( $constant ) ) {
				echo '<code>' . esc_html( $constant ) . '</code> is set in wp-config.php and takes precedence.';
			} else {
				printf(
					'<input class="regular-text" type="%s" id="wib-%s" name="%s[%s]" value="%s" autocomplete="off">',
					esc_attr( $type ),
					esc_attr( $key ),
					esc_attr( self::SETTINGS ),
					esc_attr( $key ),
					esc_attr( $value )
				);
			}
			echo '</td></tr>';
		}
		echo '</table>';
		printf( '<p>Webhooks waiting for a retry: %d</p>', count( self::queue() ) );
		$pause = self::pause();
		if ( $pause ) {
			printf(
				'<p>Writer Images refused the last webhook with HTTP %d (a 401 means a wrong secret or site key, or this server&#8217;s clock is more than five minutes off). Until %s UTC only WP-Cron retries, one webhook at a time; changing these settings retries at once.</p>',
				(int) $pause['code'],
				esc_html( gmdate( 'Y-m-d H:i:s', $pause['until'] ) )
			);
		}
		submit_button();
		echo '</form></div>';
	}
}

Writer_Images_Bridge::boot();
register_deactivation_hook( __FILE__, array( 'Writer_Images_Bridge', 'deactivate' ) );
