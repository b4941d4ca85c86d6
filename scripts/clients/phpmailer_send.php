<?php
// Sends one message with PHPMailer, as Debian packages it (libphp-phpmailer),
// for tests/real_clients.rs. Usage: php phpmailer_send.php CONFIG.json
//
// The config (JSON) says where and how to send:
//   host, port, security ("" plain, "tls" STARTTLS, "ssl" implicit TLS),
//   autotls (PHPMailer's SMTPAutoTLS), auth (null, "PLAIN", "LOGIN", "CRAM-MD5"),
//   user, pass, helo, from, to (list), subject, text, html (optional),
//   attachment (a path, optional), attachment_name, wire_out, message_out.
//
// Everything PHPMailer writes to the socket outside the TLS handshake is
// recorded (wire_out), so the test can compare it with the honeypot's
// transcript byte for byte; the message PHPMailer built is saved as well
// (message_out). Date, Message-ID and MIME boundaries are fixed, so a run is
// reproducible. The self-signed certificate is not verified.

require '/usr/share/php/libphp-phpmailer/autoload.php';

use PHPMailer\PHPMailer\PHPMailer;
use PHPMailer\PHPMailer\SMTP;
use PHPMailer\PHPMailer\Exception;

/** An SMTP connection that keeps a copy of every byte it sends. */
class RecordingSMTP extends SMTP
{
    public $wire = '';

    public function client_send($data, $command = '')
    {
        $this->wire .= $data;
        return parent::client_send($data, $command);
    }
}

/** Fixed MIME boundaries instead of random ones. */
class FixedIdMailer extends PHPMailer
{
    protected function generateId()
    {
        return 'latrineTestBoundary0123456789';
    }
}

$config = json_decode(file_get_contents($argv[1]), true);
if (!is_array($config)) {
    fwrite(STDERR, "bad config {$argv[1]}\n");
    exit(2);
}

$smtp = new RecordingSMTP();
$mail = new FixedIdMailer(true);
$mail->setSMTPInstance($smtp);
$mail->isSMTP();
$mail->Host = $config['host'];
$mail->Port = $config['port'];
$mail->Timeout = 20;
$mail->Helo = $config['helo'];
$mail->SMTPSecure = $config['security'];
$mail->SMTPAutoTLS = $config['autotls'];
$mail->SMTPOptions = ['ssl' => [
    'verify_peer' => false,
    'verify_peer_name' => false,
    'allow_self_signed' => true,
]];
if ($config['auth'] !== null) {
    $mail->SMTPAuth = true;
    $mail->AuthType = $config['auth'];
    $mail->Username = $config['user'];
    $mail->Password = $config['pass'];
}
$mail->MessageDate = 'Fri, 27 Nov 2026 16:22:31 +0000';
$mail->MessageID = '<phpmailer.' . $config['port'] . '@client.example>';
$mail->CharSet = PHPMailer::CHARSET_UTF8;
$mail->setFrom($config['from'], 'PHPMailer Test');
foreach ($config['to'] as $to) {
    $mail->addAddress($to);
}
$mail->Subject = $config['subject'];
if (isset($config['html'])) {
    $mail->isHTML(true);
    $mail->Body = $config['html'];
    $mail->AltBody = $config['text'];
} else {
    $mail->Body = $config['text'];
}
if (isset($config['attachment'])) {
    $mail->addAttachment($config['attachment'], $config['attachment_name'], PHPMailer::ENCODING_BASE64, 'application/octet-stream');
}

$ok = false;
try {
    $ok = $mail->send();
} catch (Exception $e) {
    fwrite(STDERR, 'PHPMailer: ' . $mail->ErrorInfo . "\n");
}
file_put_contents($config['wire_out'], $smtp->wire);
file_put_contents($config['message_out'], $mail->getSentMIMEMessage());
if (!$ok) {
    exit(1);
}
echo $smtp->getLastReply();
